import type { Command } from 'commander';
import { openSession, type CliIo } from '../context.js';
import { formatBytes, formatTable, orDash } from '../format.js';
import type { Page, SnapshotView } from '../views.js';

export function registerSnapshotCommands(program: Command, io: CliIo): void {
  program
    .command('snapshots')
    .description('list snapshots, newest first')
    .option('--destination <name>', "only this destination's snapshots")
    .action(async (options: { destination?: string }, command: Command) => {
      const session = await openSession(command, io);
      const page = await session.client.request<Page<SnapshotView>>('GET', '/snapshots', { query: options });
      if (session.json) return session.printJson(page);
      session.print(
        formatTable(
          ['ID', 'DESTINATION', 'CREATED', 'FILES', 'BYTES', 'VERIFY'],
          page.items.map((snapshot) => [
            snapshot.id,
            snapshot.destination,
            snapshot.createdAt,
            String(snapshot.files),
            formatBytes(snapshot.bytes),
            orDash(snapshot.verify),
          ]),
        ),
      );
    });
}
