import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { CopyEngine } from './copy-cases.js';
import { caseResult, type CaseResult } from './report.js';
import { RUNS } from './settings.js';
import { flushWrites, interleaveAfterWarmUp, timeCommand, timed } from './timing.js';

/** The worker's verify and restore engines, from its build (types from its sources). */
interface SnapshotEngine {
  createSnapshot: CopyEngine['createSnapshot'];
  verifySnapshot: typeof import('../worker/src/copy/verify-snapshot.js').verifySnapshot;
  restoreSnapshot: typeof import('../worker/src/copy/restore-snapshot.js').restoreSnapshot;
}

export async function loadSnapshotEngine(root: string, copy: CopyEngine): Promise<SnapshotEngine> {
  const load = async (file: string): Promise<unknown> =>
    import(new URL(`worker/dist/copy/${file}`, `file://${root}/`).href);
  const verify = (await load('verify-snapshot.js')) as Pick<SnapshotEngine, 'verifySnapshot'>;
  const restore = (await load('restore-snapshot.js')) as Pick<SnapshotEngine, 'restoreSnapshot'>;
  return {
    createSnapshot: copy.createSnapshot,
    verifySnapshot: verify.verifySnapshot,
    restoreSnapshot: restore.restoreSnapshot,
  };
}

interface Made {
  snapshotPath: string;
  manifestSha256: string;
}

/**
 * The cases reading a snapshot: `verifySnapshot` against `sha256sum -c` (or `openssl dgst` for
 * one file) of the same files, and `restoreSnapshot` into a new folder against `cp -a` of the
 * snapshot. Each snapshot is made once, untimed, by `createSnapshot` (with its manifest).
 * The 1 GiB case is separate, to run last with the other large one.
 */
export function snapshotCases(engine: SnapshotEngine, out: string) {
  let job = 0;
  const make = async (source: string, label: string): Promise<Made> => {
    const made = await engine.createSnapshot({
      source,
      backupRoot: join(out, label),
      destination: 'snapshots',
      jobId: `bench-${label}-${(job += 1)}`,
      startedAt: new Date(),
    });
    return { snapshotPath: made.path, manifestSha256: made.manifestSha256 };
  };
  let problems = 0;
  const verify = (snapshot: Made) =>
    timed(async () => {
      problems += (await engine.verifySnapshot(snapshot)).problems.count;
    });
  const problemNote = () => (problems > 0 ? { note: `Coffer reported ${problems} problems` } : {});

  return {
    tree: async (smallFiles: string): Promise<CaseResult[]> => {
      console.log('case: verify the 20k tree');
      problems = 0;
      const snapshot = await make(smallFiles, 'verify-tree');
      // The baseline's list, outside the snapshot (an extra file there would be a problem to Coffer).
      const list = join(out, 'verify-tree', 'sha256sums');
      run('sh', [
        '-c',
        'cd "$1" && find . -type f -print0 | xargs -0 sha256sum >"$2"',
        'list',
        snapshot.snapshotPath,
        list,
      ]);
      const checked = await interleaveAfterWarmUp(
        RUNS.verifyTree,
        [
          { name: 'coffer', run: () => verify(snapshot) },
          { name: 'sha256sum', run: async () => sha256sumCheck(snapshot.snapshotPath, list) },
        ],
        flushWrites,
      );
      const results = [
        caseResult({
          name: 'verify the 20k tree (20,000 × 4 KiB in 200 folders)',
          unit: 's',
          target: '<= 1.0',
          baselineName: 'sha256sum -c',
          coffer: checked.get('coffer') ?? [],
          baseline: checked.get('sha256sum') ?? [],
          ...problemNote(),
        }),
      ];

      console.log('case: restore the 20k tree into a new folder');
      const targets = join(out, 'restore-tree');
      mkdirSync(targets, { recursive: true });
      let restored = 0;
      const restoredWrong: number[] = [];
      const restoredSamples = await interleaveAfterWarmUp(
        RUNS.restoreTree,
        [
          {
            name: 'coffer',
            run: async (round: number) =>
              timed(async () => {
                const report = await engine.restoreSnapshot({
                  snapshotPath: snapshot.snapshotPath,
                  manifestSha256: snapshot.manifestSha256,
                  target: join(targets, `coffer-${round}`),
                  jobId: `bench-restore-${(restored += 1)}`,
                  attempt: '0',
                });
                if (report.files !== 20_000) restoredWrong.push(report.files);
              }),
          },
          {
            name: 'cp',
            run: async (round: number) =>
              timeCommand('cp', ['-a', snapshot.snapshotPath, join(targets, `cp-${round}`)]),
          },
        ],
        flushWrites,
      );
      results.push(
        caseResult({
          name: 'restore the 20k tree into a new folder',
          unit: 's',
          target: '<= 1.3',
          baselineName: 'cp -a of the snapshot',
          coffer: restoredSamples.get('coffer') ?? [],
          baseline: restoredSamples.get('cp') ?? [],
          ...(restoredWrong.length > 0 ? { note: `restores of ${restoredWrong.join(', ')} files` } : {}),
        }),
      );
      return results;
    },

    bigFile: async (bigFile: string): Promise<CaseResult> => {
      console.log('case: verify one 1 GiB file');
      problems = 0;
      const snapshot = await make(bigFile, 'verify-big');
      const copy = join(snapshot.snapshotPath, basename(bigFile));
      const samples = await interleaveAfterWarmUp(
        RUNS.verifyBigFile,
        [
          { name: 'coffer', run: () => verify(snapshot) },
          { name: 'openssl', run: async () => timeCommand('openssl', ['dgst', '-sha256', copy]) },
        ],
        flushWrites,
      );
      return caseResult({
        name: 'verify one 1 GiB file',
        unit: 's',
        target: '<= 1.1',
        baselineName: 'openssl dgst -sha256',
        coffer: samples.get('coffer') ?? [],
        baseline: samples.get('openssl') ?? [],
        ...problemNote(),
      });
    },
  };
}

/** `sha256sum -c` of the list, run in the snapshot folder (the list names `./d000/f0.dat` …). */
function sha256sumCheck(folder: string, list: string): number {
  return timeCommand('sh', ['-c', 'cd "$1" && exec sha256sum -c --quiet "$2"', 'sha256sum', folder, list]);
}

function run(command: string, args: readonly string[]): void {
  const result = spawnSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (${result.status}): ${result.stderr}`);
}
