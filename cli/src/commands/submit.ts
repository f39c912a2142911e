import { resolve } from 'node:path';
import type { Command } from 'commander';
import { openSession, type CliIo, type Session } from '../context.js';
import { CliError } from '../errors.js';
import { formatOutcome } from '../format.js';
import { collect } from '../options.js';
import type { Accepted } from '../views.js';
import { waitForJob } from '../wait.js';

/** Reports a queued job; with --wait, follows it to the end and fails unless it completed. */
async function follow(session: Session, kind: string, accepted: Accepted, wait: boolean): Promise<void> {
  if (!wait) {
    if (session.json) session.printJson(accepted);
    else session.print(`${kind} job ${accepted.id} ${accepted.status}`);
    return;
  }
  if (!session.json) session.print(`${kind} job ${accepted.id} ${accepted.status}`);
  // With --json, stdout carries only the final view; progress goes to stderr.
  const view = await waitForJob(session.client, accepted.id, session.json ? session.io.stderr : session.io.stdout);
  if (session.json) session.printJson(view);
  if (view.status !== 'completed') throw new CliError(formatOutcome(view), 1);
  if (!session.json) session.print(formatOutcome(view));
}

export function registerSubmitCommands(program: Command, io: CliIo): void {
  program
    .command('backup')
    .description('back up a folder (or file) into a snapshot')
    .argument('<path>', 'what to back up (made absolute against the current folder)')
    .option('--destination <name>', "the snapshot's destination (default: the source's base name)")
    .option('--exclude <pattern>', 'a .gitignore pattern to leave out (repeatable)', collect)
    .option('--no-incremental', 'copy every file instead of hard-linking unchanged ones')
    .option('--wait', 'wait until the job ends, showing its progress')
    .action(
      async (
        path: string,
        options: { destination?: string; exclude?: string[]; incremental: boolean; wait?: boolean },
        command: Command,
      ) => {
        const session = await openSession(command, io);
        const accepted = await session.client.request<Accepted>('POST', '/backup', {
          body: {
            source: resolve(path),
            destination: options.destination,
            exclude: options.exclude,
            ...(options.incremental ? {} : { incremental: false }),
          },
        });
        await follow(session, 'backup', accepted, options.wait === true);
      },
    );

  program
    .command('restore')
    .description('restore a snapshot (or some of its paths) into a target folder')
    .argument('<snapshot>', "the snapshot's id (its backup job's id)")
    .argument('<target>', 'where to write (made absolute against the current folder)')
    .option('--path <path>', 'a file or folder of the snapshot to restore (repeatable)', collect)
    .option('--overwrite', 'write into an existing target, replacing what the snapshot holds')
    .option('--wait', 'wait until the job ends, showing its progress')
    .action(
      async (
        snapshot: string,
        target: string,
        options: { path?: string[]; overwrite?: boolean; wait?: boolean },
        command: Command,
      ) => {
        const session = await openSession(command, io);
        const accepted = await session.client.request<Accepted>('POST', '/restore', {
          body: { snapshot, target: resolve(target), paths: options.path, overwrite: options.overwrite },
        });
        await follow(session, 'restore', accepted, options.wait === true);
      },
    );

  program
    .command('verify')
    .description('check every file of a snapshot against its manifest')
    .argument('<snapshot>', "the snapshot's id")
    .option('--wait', 'wait until the job ends, showing its progress')
    .action(async (snapshot: string, options: { wait?: boolean }, command: Command) => {
      const session = await openSession(command, io);
      const accepted = await session.client.request<Accepted>('POST', '/verify', { body: { snapshot } });
      await follow(session, 'verify', accepted, options.wait === true);
    });
}
