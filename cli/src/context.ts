import type { Command } from 'commander';
import { createApiClient, type ApiClient } from './api-client.js';
import { resolveConfig } from './config.js';

/** What the commands write to and read settings from; main passes the process's own. */
export interface CliIo {
  env: Readonly<Record<string, string | undefined>>;
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
}

/** What one run of a command needs: the API client and the output mode. */
export interface Session {
  client: ApiClient;
  json: boolean;
  io: CliIo;
  /** Writes one line (or block) to stdout. */
  print(text: string): void;
  /** Writes the API's answer as JSON to stdout. */
  printJson(value: unknown): void;
}

interface GlobalOptions {
  url?: string;
  tokenFile?: string;
  json?: boolean;
}

export async function openSession(command: Command, io: CliIo): Promise<Session> {
  const options = command.optsWithGlobals<GlobalOptions>();
  const config = await resolveConfig({ env: io.env, url: options.url, tokenFile: options.tokenFile });
  return {
    client: createApiClient(config),
    json: options.json === true,
    io,
    print(text) {
      io.stdout.write(`${text}\n`);
    },
    printJson(value) {
      io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
    },
  };
}
