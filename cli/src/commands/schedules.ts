import { resolve } from 'node:path';
import type { Command } from 'commander';
import { openSession, type CliIo } from '../context.js';
import { formatFields, formatTable, orDash } from '../format.js';
import { collect } from '../options.js';
import type { Page, ScheduleView } from '../views.js';

function formatSchedule(schedule: ScheduleView): string {
  return formatFields([
    ['name', schedule.name],
    ['cron', schedule.cron],
    ['timezone', schedule.timezone],
    ['source', schedule.backup.source],
    ['destination', schedule.backup.destination],
    ['exclude', schedule.backup.exclude?.join(' ')],
    ['incremental', schedule.backup.incremental === false ? 'no' : undefined],
    ['next run', schedule.nextRunAt],
    ['last job', schedule.lastJobId],
    ['last status', schedule.lastStatus],
    ['actor', schedule.actor],
    ['created', schedule.createdAt],
  ]);
}

function schedulePath(name: string): string {
  return `/schedules/${encodeURIComponent(name)}`;
}

export function registerScheduleCommands(program: Command, io: CliIo): void {
  const schedules = program.command('schedules').description('list, show, create and delete backup schedules');

  schedules
    .command('list')
    .description('list the schedules')
    .action(async (_options: unknown, command: Command) => {
      const session = await openSession(command, io);
      const page = await session.client.request<Page<ScheduleView>>('GET', '/schedules');
      if (session.json) return session.printJson(page);
      session.print(
        formatTable(
          ['NAME', 'CRON', 'TIMEZONE', 'SOURCE', 'NEXT RUN', 'LAST STATUS'],
          page.items.map((schedule) => [
            schedule.name,
            schedule.cron,
            schedule.timezone,
            schedule.backup.source,
            orDash(schedule.nextRunAt),
            orDash(schedule.lastStatus),
          ]),
        ),
      );
    });

  schedules
    .command('show')
    .description('show one schedule')
    .argument('<name>', "the schedule's name")
    .action(async (name: string, _options: unknown, command: Command) => {
      const session = await openSession(command, io);
      const schedule = await session.client.request<ScheduleView>('GET', schedulePath(name));
      if (session.json) session.printJson(schedule);
      else session.print(formatSchedule(schedule));
    });

  schedules
    .command('create')
    .description('create a schedule that runs a backup on a cron')
    .argument('<name>', "the schedule's name")
    .requiredOption('--cron <expression>', 'when: 5 fields (or 6, seconds first), read in --timezone')
    .option('--timezone <zone>', 'an IANA time zone (default UTC)')
    .requiredOption('--source <path>', 'what to back up (made absolute against the current folder)')
    .option('--destination <name>', "the snapshots' destination (default: the source's base name)")
    .option('--exclude <pattern>', 'a .gitignore pattern to leave out (repeatable)', collect)
    .action(
      async (
        name: string,
        options: { cron: string; timezone?: string; source: string; destination?: string; exclude?: string[] },
        command: Command,
      ) => {
        const session = await openSession(command, io);
        const schedule = await session.client.request<ScheduleView>('POST', '/schedules', {
          body: {
            name,
            cron: options.cron,
            timezone: options.timezone,
            backup: { source: resolve(options.source), destination: options.destination, exclude: options.exclude },
          },
        });
        if (session.json) session.printJson(schedule);
        else session.print(`schedule ${schedule.name} created, next run ${orDash(schedule.nextRunAt)}`);
      },
    );

  schedules
    .command('delete')
    .description('delete a schedule')
    .argument('<name>', "the schedule's name")
    .action(async (name: string, _options: unknown, command: Command) => {
      const session = await openSession(command, io);
      await session.client.request<undefined>('DELETE', schedulePath(name));
      if (!session.json) session.print(`schedule ${name} deleted`);
    });
}
