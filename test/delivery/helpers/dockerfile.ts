/** One instruction of a Dockerfile, continuation lines joined. */
export interface Instruction {
  keyword: string;
  /** Flags before the arguments (`--from=build`, `--interval=15s`). */
  flags: Record<string, string>;
  /** The arguments after the flags, as written. */
  args: string;
  line: number;
}

export interface Stage {
  /** The image, with global ARGs substituted. */
  from: string;
  name: string | undefined;
  instructions: Instruction[];
}

export interface Dockerfile {
  /** ARGs declared before the first FROM, with their defaults. */
  globalArgs: Record<string, string>;
  stages: Stage[];
}

const FLAGGED = new Set(['ADD', 'COPY', 'RUN', 'HEALTHCHECK', 'FROM']);

/** Substitutes `$NAME` and `${NAME}` (and `${NAME:-default}`) as Docker does. */
export function expand(value: string, variables: Record<string, string>): string {
  return value.replace(
    /\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g,
    (_match, braced: string | undefined, fallback: string | undefined, bare: string | undefined) => {
      const name = braced ?? bare ?? '';
      const found = variables[name];
      return found !== undefined && found !== '' ? found : (fallback ?? '');
    },
  );
}

/** `KEY=value KEY2="value 2"` (ENV, ARG, LABEL) into pairs. */
export function parsePairs(args: string): Record<string, string> {
  const pairs: Record<string, string> = {};
  for (const match of args.matchAll(/([A-Za-z_][A-Za-z0-9_.-]*)(?:=("(?:[^"\\]|\\.)*"|\S*))?/g)) {
    const [, key, raw] = match;
    if (key === undefined) continue;
    pairs[key] = raw === undefined ? '' : raw.startsWith('"') ? (JSON.parse(raw) as string) : raw;
  }
  return pairs;
}

/** The JSON (exec) form of CMD, ENTRYPOINT and HEALTHCHECK CMD; undefined for the shell form. */
export function execForm(args: string): string[] | undefined {
  const text = args.trim();
  if (!text.startsWith('[')) return undefined;
  const parsed: unknown = JSON.parse(text);
  if (!Array.isArray(parsed) || !parsed.every((item) => typeof item === 'string')) {
    throw new Error(`not an exec form: ${args}`);
  }
  return parsed;
}

/** A deliberately small Dockerfile reader: enough for the project's own three files. */
export function parseDockerfile(text: string): Dockerfile {
  const instructions: Instruction[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const first = lines[i] ?? '';
    if (/^\s*(#|$)/.test(first)) continue;
    const start = i;
    let joined = first;
    while (/\\\s*$/.test(joined) && i + 1 < lines.length) {
      joined = joined.replace(/\\\s*$/, ' ');
      i++;
      const next = lines[i] ?? '';
      // Comment lines inside a continuation are dropped, as Docker does.
      if (/^\s*#/.test(next)) continue;
      joined += next;
    }
    const match = /^\s*([A-Za-z]+)\s*(.*)$/.exec(joined);
    if (!match?.[1]) throw new Error(`line ${start + 1}: cannot read "${joined}"`);
    const keyword = match[1].toUpperCase();
    let args = (match[2] ?? '').trim();
    const flags: Record<string, string> = {};
    if (FLAGGED.has(keyword)) {
      for (let flag = /^--([a-z-]+)(?:=(\S*))?\s+/.exec(args); flag; flag = /^--([a-z-]+)(?:=(\S*))?\s+/.exec(args)) {
        flags[flag[1] ?? ''] = flag[2] ?? 'true';
        args = args.slice(flag[0].length);
      }
    }
    instructions.push({ keyword, flags, args, line: start + 1 });
  }

  const globalArgs: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const instruction of instructions) {
    if (instruction.keyword === 'FROM') {
      const [image = '', as, name] = instruction.args.split(/\s+/);
      stages.push({
        from: expand(image, globalArgs),
        name: as?.toUpperCase() === 'AS' ? name : undefined,
        instructions: [],
      });
    } else if (stages.length === 0) {
      if (instruction.keyword !== 'ARG')
        throw new Error(`line ${instruction.line}: ${instruction.keyword} before FROM`);
      Object.assign(globalArgs, parsePairs(instruction.args));
    } else {
      stages.at(-1)?.instructions.push(instruction);
    }
  }
  return { globalArgs, stages };
}

/** The sources and destination of a COPY/ADD (shell or JSON form). */
export function copyOperands(instruction: Instruction): { sources: string[]; destination: string } {
  const operands = execForm(instruction.args) ?? instruction.args.split(/\s+/).filter(Boolean);
  const destination = operands.at(-1);
  if (operands.length < 2 || destination === undefined) {
    throw new Error(`line ${instruction.line}: COPY needs a source and a destination`);
  }
  return { sources: operands.slice(0, -1), destination };
}
