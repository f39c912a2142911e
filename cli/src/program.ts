import { Command } from 'commander';
import { registerJobCommands } from './commands/jobs.js';
import { registerScheduleCommands } from './commands/schedules.js';
import { registerSnapshotCommands } from './commands/snapshots.js';
import { registerSubmitCommands } from './commands/submit.js';
import { registerTokenCommands } from './commands/tokens.js';
import { DEFAULT_URL } from './config.js';
import type { CliIo } from './context.js';

/** The `coffer` command tree. Errors surface as exceptions (exitOverride); main maps them to exit codes. */
export function buildProgram(io: CliIo): Command {
  const program = new Command('coffer')
    .description(
      "Coffer's command line: backups, restores, verifies, jobs, logs, schedules and tokens over the HTTP API",
    )
    .option('--url <url>', `the API's base URL (default: COFFER_URL, else ${DEFAULT_URL})`)
    .option('--token-file <file>', 'a file holding the bearer token (default: COFFER_TOKEN or COFFER_TOKEN_FILE)')
    .option('--json', "print the API's JSON instead of text")
    // Subcommands copy these settings when they are created, so they come first.
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
    });
  registerSubmitCommands(program, io);
  registerJobCommands(program, io);
  registerSnapshotCommands(program, io);
  registerScheduleCommands(program, io);
  registerTokenCommands(program, io);
  return program;
}
