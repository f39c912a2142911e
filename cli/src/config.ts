import { readFile } from 'node:fs/promises';
import { UsageError, CliError } from './errors.js';

export const DEFAULT_URL = 'http://127.0.0.1:3000';

export interface CliConfig {
  /** The API's base URL, without a trailing slash. */
  url: string;
  /** The bearer token; undefined sends no Authorization header (the API then answers 401). */
  token: string | undefined;
}

export interface ConfigSources {
  /** The environment: COFFER_URL, COFFER_TOKEN, COFFER_TOKEN_FILE. */
  env: Readonly<Record<string, string | undefined>>;
  /** `--url`, over COFFER_URL. */
  url?: string | undefined;
  /** `--token-file`, over COFFER_TOKEN and COFFER_TOKEN_FILE. */
  tokenFile?: string | undefined;
}

function setting(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

/** Reads the settings once, from the options first and the environment second. */
export async function resolveConfig(sources: ConfigSources): Promise<CliConfig> {
  const rawUrl = setting(sources.url) ?? setting(sources.env.COFFER_URL) ?? DEFAULT_URL;
  let parsed: URL;
  try {
    parsed = new URL(rawUrl);
  } catch {
    throw new UsageError(`the API URL is not a URL: ${rawUrl}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new UsageError(`the API URL must be http or https: ${rawUrl}`);
  }
  const url = rawUrl.replace(/\/+$/, '');

  const optionFile = setting(sources.tokenFile);
  if (optionFile !== undefined) return { url, token: await readToken(optionFile) };
  const token = setting(sources.env.COFFER_TOKEN);
  const tokenFile = setting(sources.env.COFFER_TOKEN_FILE);
  if (token !== undefined && tokenFile !== undefined) {
    throw new UsageError('set COFFER_TOKEN or COFFER_TOKEN_FILE, not both');
  }
  if (tokenFile !== undefined) return { url, token: await readToken(tokenFile) };
  return { url, token };
}

async function readToken(file: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new CliError(`cannot read the token file ${file}: ${code}`, 1);
  }
  // Files written by `echo` or an editor end with a newline that is not part of the token.
  return text.replace(/[\r\n]+$/, '');
}
