import type { Command } from 'commander';
import { openSession, type CliIo } from '../context.js';
import { formatFields, formatProgress, formatTable, orDash } from '../format.js';
import { positiveInteger } from '../options.js';
import type { JobView, LogRow, Page } from '../views.js';

function jobTarget(view: JobView): string {
  if (view.kind === 'restore') return `${orDash(view.snapshot)} -> ${orDash(view.target)}`;
  if (view.kind === 'verify') return orDash(view.snapshot);
  return orDash(view.source ?? view.destination);
}

export function formatJob(view: JobView): string {
  return formatFields([
    ['id', view.id],
    ['kind', view.kind],
    ['status', view.status],
    ['source', view.source],
    ['destination', view.destination],
    ['snapshot', view.snapshot],
    ['target', view.target],
    ['progress', formatProgress(view.progress)],
    ['current', view.progress.current],
    ['attempts', String(view.attempts)],
    ['created', view.createdAt],
    ['started', view.startedAt],
    ['finished', view.finishedAt],
    ['actor', view.actor],
    ['schedule', view.schedule],
    ['error', view.error ? `${view.error.code}: ${view.error.message}` : undefined],
    ['result', view.result ? JSON.stringify(view.result) : undefined],
  ]);
}

export function registerJobCommands(program: Command, io: CliIo): void {
  program
    .command('jobs')
    .description('list jobs, newest first')
    .option('--status <status>', 'only jobs in this status (queued, active, retrying, completed, failed, cancelled)')
    .option('--kind <kind>', 'only this kind (backup, restore, verify, prune)')
    .option('--limit <n>', 'how many (1-100, default 20)', positiveInteger)
    .action(async (options: { status?: string; kind?: string; limit?: number }, command: Command) => {
      const session = await openSession(command, io);
      const page = await session.client.request<Page<JobView>>('GET', '/jobs', { query: options });
      if (session.json) return session.printJson(page);
      session.print(
        formatTable(
          ['ID', 'KIND', 'STATUS', 'CREATED', 'PROGRESS', 'WHAT'],
          page.items.map((view) => [
            view.id,
            view.kind,
            view.status,
            view.createdAt,
            formatProgress(view.progress),
            jobTarget(view),
          ]),
        ),
      );
    });

  program
    .command('job')
    .description("show one job's view")
    .argument('<id>', "the job's id")
    .action(async (id: string, _options: unknown, command: Command) => {
      const session = await openSession(command, io);
      const view = await session.client.request<JobView>('GET', `/jobs/${encodeURIComponent(id)}`);
      if (session.json) session.printJson(view);
      else session.print(formatJob(view));
    });

  program
    .command('cancel')
    .description('cancel a queued or running job')
    .argument('<id>', "the job's id")
    .action(async (id: string, _options: unknown, command: Command) => {
      const session = await openSession(command, io);
      const view = await session.client.request<JobView>('DELETE', `/jobs/${encodeURIComponent(id)}`);
      if (session.json) session.printJson(view);
      else session.print(`job ${id} ${view.status === 'cancelled' ? 'cancelled' : 'is being cancelled'}`);
    });

  program
    .command('logs')
    .description('show log rows, newest first')
    .option('--job <id>', "only this job's rows")
    .option('--status <status>', 'only rows with this status')
    .option('--limit <n>', 'how many (1-1000, default 100)', positiveInteger)
    .action(async (options: { job?: string; status?: string; limit?: number }, command: Command) => {
      const session = await openSession(command, io);
      const page = await session.client.request<Page<LogRow>>('GET', '/logs', {
        query: { jobId: options.job, status: options.status, limit: options.limit },
      });
      if (session.json) return session.printJson(page);
      session.print(
        formatTable(
          ['DATE', 'ACTION', 'STATUS', 'JOB', 'WORKER', 'CODE', 'MESSAGE'],
          page.items.map((row) => [
            row.date,
            row.action,
            row.status,
            orDash(row.jobId),
            orDash(row.worker),
            orDash(row.code),
            orDash(row.message),
          ]),
        ),
      );
    });
}
