import { cp, mkdir } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { matchSource } from './build-context.js';
import { copyOperands, execForm, expand, parsePairs, type Dockerfile, type Stage } from './dockerfile.js';
import { describeRun, run } from './repo.js';

/** What the runtime stage says about starting the image. */
export interface Runtime {
  /** The folder standing for the image's WORKDIR, with what the stage copied into it. */
  workdir: string;
  env: Record<string, string>;
  cmd: string[];
  healthcheck: string[];
  user: string | undefined;
}

export interface ReplayOptions {
  /** The build context, as `docker build` would send it (see copyContext). */
  context: string;
  contextFiles: readonly string[];
  /** An empty folder: each stage gets its own root file system below it. */
  root: string;
  /** Handles `RUN npm install --global …` (the base image's tooling) instead of running it. */
  globalInstall: (command: string) => Promise<void>;
  /** Called with each RUN as executed, for the test's record. */
  onRun?: (command: string, ms: number) => void;
}

/**
 * Replays a Dockerfile natively: each stage gets a folder standing for its root file
 * system; WORKDIR, ENV, ARG and COPY (from the context or an earlier stage) act on it and
 * RUN steps of build stages run in it with `sh -c`, absolute paths mapped into the folder.
 * The last stage is not run: its RUN steps are OS set-up (users, folders) of the base image;
 * what it copies, its environment, CMD and HEALTHCHECK are returned. Not Docker, but the
 * same commands on the same files, in the same order.
 */
export async function replayDockerfile(dockerfile: Dockerfile, options: ReplayOptions): Promise<Runtime> {
  const roots = new Map<string, string>();
  let runtime: Runtime | undefined;
  for (const [index, stage] of dockerfile.stages.entries()) {
    const fsRoot = join(options.root, `stage-${index}`);
    await mkdir(fsRoot, { recursive: true });
    if (stage.name) roots.set(stage.name, fsRoot);
    roots.set(String(index), fsRoot);
    const last = index === dockerfile.stages.length - 1;
    runtime = await replayStage(stage, fsRoot, { ...dockerfile.globalArgs }, roots, last, options);
  }
  if (!runtime) throw new Error('no stage');
  return runtime;
}

async function replayStage(
  stage: Stage,
  fsRoot: string,
  globalArgs: Record<string, string>,
  roots: Map<string, string>,
  isLast: boolean,
  options: ReplayOptions,
): Promise<Runtime> {
  const inRoot = (path: string): string => join(fsRoot, path);
  let workdir = '/';
  const args: Record<string, string> = {};
  const env: Record<string, string> = {};
  let cmd: string[] = [];
  let healthcheck: string[] = [];
  let user: string | undefined;

  for (const instruction of stage.instructions) {
    const variables = { ...globalArgs, ...args, ...env };
    switch (instruction.keyword) {
      case 'ARG':
        Object.assign(args, parsePairs(instruction.args));
        break;
      case 'ENV':
        for (const [key, value] of Object.entries(parsePairs(instruction.args))) env[key] = expand(value, variables);
        break;
      case 'WORKDIR':
        workdir = posix.resolve(workdir, expand(instruction.args, variables));
        await mkdir(inRoot(workdir), { recursive: true });
        break;
      case 'COPY': {
        const { sources, destination } = copyOperands(instruction);
        const target = inRoot(posix.resolve(workdir, expand(destination, variables)));
        const from = instruction.flags.from;
        if (from !== undefined) {
          const sourceRoot = roots.get(from);
          if (!sourceRoot) throw new Error(`line ${instruction.line}: no stage ${from}`);
          for (const source of sources) {
            await cp(join(sourceRoot, source), target, { recursive: true, verbatimSymlinks: true });
          }
        } else {
          for (const source of sources) {
            const normalized = source === '.' ? '' : source.replace(/^\.\//, '').replace(/\/+$/, '');
            const isGlob = /[*?[]/.test(normalized);
            const matched = matchSource(source, options.contextFiles);
            if (matched.length === 0) throw new Error(`line ${instruction.line}: COPY ${source}: no such file`);
            // A folder copies its contents; files (named or matched) go by name into a folder
            // destination, or become the destination.
            const isFolder = !isGlob && !matched.includes(normalized);
            const intoFolder = destination.endsWith('/') || sources.length > 1 || isGlob || isFolder;
            for (const file of matched) {
              const to = isFolder
                ? join(target, normalized === '' ? file : file.slice(normalized.length + 1))
                : intoFolder
                  ? join(target, posix.basename(file))
                  : target;
              await mkdir(dirname(to), { recursive: true });
              await cp(join(options.context, file), to, { verbatimSymlinks: true });
            }
          }
        }
        break;
      }
      case 'RUN': {
        if (isLast) break;
        const command = expand(instruction.args, { ...globalArgs, ...args });
        const started = Date.now();
        if (/^npm install --global\b/.test(command)) {
          await options.globalInstall(command);
        } else {
          // Absolute paths name the image's file system: map them into this stage's folder.
          const mapped = command.replace(/(^|\s)\/(?=[^\s])/g, `$1${fsRoot}/`);
          const result = await run('sh', ['-c', mapped], {
            cwd: inRoot(workdir),
            env: { ...buildEnvironment(), ...args, ...env },
            timeoutMs: 240_000,
          });
          if (result.code !== 0)
            throw new Error(`line ${instruction.line}: RUN ${command} failed\n${describeRun(result)}`);
        }
        options.onRun?.(command, Date.now() - started);
        break;
      }
      case 'CMD':
        cmd = execForm(instruction.args) ?? ['sh', '-c', instruction.args];
        break;
      case 'HEALTHCHECK':
        healthcheck = execForm(instruction.args.replace(/^CMD\s+/, '')) ?? [];
        break;
      case 'USER':
        user = instruction.args;
        break;
      default:
        // EXPOSE, STOPSIGNAL, LABEL: metadata only.
        break;
    }
  }
  return { workdir: inRoot(workdir), env, cmd, healthcheck, user };
}

/**
 * The machine's environment (registry settings, CA certificates), less what the test
 * runner's own `pnpm test` adds: a docker build starts from a clean environment.
 */
function buildEnvironment(): NodeJS.ProcessEnv {
  const clean: NodeJS.ProcessEnv = { CI: 'true' };
  for (const [name, value] of Object.entries(process.env)) {
    if (/^(npm_|VITEST|PNPM_SCRIPT_SRC_DIR$|INIT_CWD$|NODE_ENV$|NODE_OPTIONS$|TEST$)/.test(name)) continue;
    clean[name] = value;
  }
  return clean;
}
