#!/usr/bin/env node
// The shell scripts of a Jenkinsfile's `sh` steps, for shellcheck (ci/validate-delivery.sh)
// and for test/delivery, which runs them against a fake docker.
//   node ci/jenkins-sh-steps.mjs Jenkinsfile           prints [{ "line": 3, "script": "…" }, …]
//   node ci/jenkins-sh-steps.mjs Jenkinsfile OUT_DIR   writes OUT_DIR/jenkinsfile-line-<n>.sh
// Steps must be plain literals: a double-quoted Groovy string with `$` in it (interpolated by
// Groovy, the way secrets leak into logs and process lists) is reported as an error.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const STEP = /\bsh\s*\(?\s*(?:script\s*:\s*)?('''[\s\S]*?'''|"""[\s\S]*?"""|'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")/g;
const ESCAPES = { n: '\n', t: '\t', r: '\r', b: '\b', f: '\f' };

function unescape(body) {
  return body.replace(/\\(.)/g, (_, char) => ESCAPES[char] ?? char);
}

function extractShSteps(source) {
  // Full-line comments may mention `sh '…'`; blank them, keeping the line numbers.
  const text = source.replace(/^[ \t]*\/\/.*$/gm, '');
  const steps = [];
  const errors = [];
  for (const match of text.matchAll(STEP)) {
    const literal = match[1];
    const line = text.slice(0, match.index).split('\n').length;
    const quote = literal.startsWith("'''") || literal.startsWith('"""') ? 3 : 1;
    const body = literal.slice(quote, -quote);
    if (literal.startsWith('"') && /(^|[^\\])\$/.test(body)) {
      errors.push(`Jenkinsfile:${line}: sh step in a Groovy GString with $ (use single quotes): ${literal}`);
      continue;
    }
    steps.push({ line, script: unescape(body) });
  }
  return { steps, errors };
}

const [file, outDir] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: jenkins-sh-steps.mjs JENKINSFILE [OUT_DIR]\n');
  process.exit(2);
}
const { steps, errors } = extractShSteps(readFileSync(file, 'utf8'));
for (const error of errors) process.stderr.write(`${error}\n`);
if (steps.length === 0) errors.push(`${file}: no sh step found`);
if (outDir) {
  mkdirSync(outDir, { recursive: true });
  for (const { line, script } of steps) {
    // Jenkins runs a step without a shebang with /bin/sh -xe.
    writeFileSync(join(outDir, `jenkinsfile-line-${line}.sh`), `#!/bin/sh\n# ${file}:${line}\n${script}\n`);
  }
} else {
  process.stdout.write(`${JSON.stringify(steps, null, 2)}\n`);
}
process.exit(errors.length > 0 ? 1 : 0);
