#!/usr/bin/env node
import { CommanderError } from 'commander';
import { CliError, oneLine } from './errors.js';
import { buildProgram } from './program.js';

/** 0 for help and --version, 2 for every other commander error: they are all usage errors. */
function commanderExitCode(error: CommanderError): number {
  return error.code === 'commander.helpDisplayed' || error.code === 'commander.version' ? 0 : 2;
}

async function main(): Promise<number> {
  const io = { env: process.env, stdout: process.stdout, stderr: process.stderr };
  try {
    await buildProgram(io).parseAsync(process.argv);
    return 0;
  } catch (error) {
    // commander has already printed its own message.
    if (error instanceof CommanderError) return commanderExitCode(error);
    const message = error instanceof Error ? error.message : String(error);
    io.stderr.write(`coffer: ${oneLine(message)}\n`);
    return error instanceof CliError ? error.exitCode : 1;
  }
}

process.exitCode = await main();
