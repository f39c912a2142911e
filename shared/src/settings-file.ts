import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseEnv } from 'node:util';
import { ConfigError } from './config-error.js';

type Env = Record<string, string | undefined>;

/**
 * Where the settings file is looked for when `COFFER_ENV_FILE` is unset: `coffer.env` at the top
 * of the repository (this module is `shared/src` or `shared/dist`), so `pnpm start`, the token
 * command and a lone API or worker all read the same settings, wherever they are started from.
 * Installed elsewhere (an image), there is no such file and only the environment counts.
 */
export const DEFAULT_SETTINGS_FILE = fileURLToPath(new URL('../../coffer.env', import.meta.url));

/**
 * The environment with the settings file's variables beneath it: `NAME=value` lines, as Node's
 * `--env-file` reads them; a variable set in the environment wins over the file. A file named by
 * `COFFER_ENV_FILE` must exist; the default one is optional.
 */
export function withSettingsFile(env: Env): Env {
  const named = env.COFFER_ENV_FILE;
  const file = named ?? DEFAULT_SETTINGS_FILE;
  if (named === undefined && !existsSync(file)) return env;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new ConfigError([`COFFER_ENV_FILE: cannot read ${file} (${code})`]);
  }
  return { ...parseEnv(text), ...env };
}
