import ignore from 'ignore';

/**
 * Tells which entries below a source folder a backup's `exclude` patterns leave out, with
 * `.gitignore` semantics as the `ignore` library implements them (the one ESLint uses):
 * `node_modules/` (folders only), `*.tmp` (at any depth), `/cache` (top level only), `!keep.tmp`
 * (the last pattern that matches decides; a negation cannot bring back an entry whose folder is
 * excluded, as the walk never enters that folder).
 *
 * Each pattern is one rule, never split at newlines; matching is case-sensitive, as git is on
 * Linux. Paths are relative to the source folder, which itself is never matched. A name that is
 * not valid UTF-8 is matched as it is displayed elsewhere (manifest, warnings): each invalid
 * byte becomes U+FFFD, so wildcards match it and a literal pattern names it only with U+FFFD.
 */
export class ExcludeMatcher {
  readonly #rules: ignore.Ignore;
  #current: ignore.Ignore;
  #tested = 0;

  constructor(rules: ignore.Ignore) {
    this.#rules = rules;
    this.#current = fresh(rules);
  }

  /** Whether the entry at `relative` (bytes below the source; a folder when `folder`) is excluded. */
  excludes(relative: Buffer, folder: boolean): boolean {
    // The library remembers every path it answered (and its folders): started afresh now and
    // then, memory stays bounded whatever the size of the tree.
    if ((this.#tested += 1) > RESULTS_KEPT) {
      this.#current = fresh(this.#rules);
      this.#tested = 1;
    }
    const text = relative.toString();
    // A trailing `/` is how the library tells a folder, which `dir/` patterns need.
    return this.#current.ignores(folder ? `${text}/` : text);
  }
}

// Answers one matcher keeps before starting afresh; its folders' are found again on the way.
const RESULTS_KEPT = 10_000;
const OPTIONS = { ignorecase: false };

// The rules of the last patterns seen on this thread: every task of a copy has the same ones,
// and rules compile their expressions once, when first used.
let last: { key: string; rules: ignore.Ignore } | undefined;

/** The matcher for `patterns`, or undefined when there are none (nothing to test). */
export function excludeMatcher(patterns: readonly string[] | undefined): ExcludeMatcher | undefined {
  if (patterns === undefined || patterns.length === 0) return undefined;
  const key = JSON.stringify(patterns);
  if (last?.key !== key) last = { key, rules: ignore(OPTIONS).add(patterns.map((pattern) => ({ pattern }))) };
  return new ExcludeMatcher(last.rules);
}

/** An empty cache over the same (already compiled) rules. */
function fresh(rules: ignore.Ignore): ignore.Ignore {
  return ignore(OPTIONS).add(rules);
}
