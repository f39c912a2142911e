import { parseArgs } from 'node:util';
import type { CofferConfig } from '@coffer/shared';
import type { RevocationList } from '../auth/revocation-list.js';
import {
  RevocationNotShared,
  createToken,
  findToken,
  revokeToken,
  viewOf,
  type TokenView,
} from '../auth/token-admin.js';
import type { TokenRepository } from '../auth/token-repository.js';

export const USAGE = `usage: pnpm --dir api token <command>
  create --name <name> --role admin|operator|viewer [--source-root <folder>]...
                       creates a token and prints its secret (shown only this once) on stdout
  list [--json]        lists every token, revoked ones too, without secrets
  revoke <id|name>     revokes a token; it stops working at once, on every API replica`;

export interface TokenCommandDeps {
  tokens: TokenRepository;
  /** Where a revocation is recorded for API replicas that cannot reach MySQL. */
  revocations: Pick<RevocationList, 'add'>;
  config: Pick<CofferConfig, 'sourceRoots'>;
  /** Writes a line to stdout: only the secret (create) or the listing. */
  out(line: string): void;
  /** Writes a line to stderr: everything meant for the person at the terminal. */
  err(line: string): void;
}

function table(views: TokenView[]): string[] {
  const rows = views.map((view) => [
    String(view.id),
    view.name,
    view.role,
    view.sourceRoots?.join(':') ?? '*',
    view.createdAt,
    view.lastUsedAt ?? '-',
    view.revokedAt ?? '-',
  ]);
  const header = ['id', 'name', 'role', 'sourceRoots', 'created', 'lastUsed', 'revoked'];
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => row[i]?.length ?? 0)));
  return [header, ...rows].map((row) =>
    row
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd(),
  );
}

/** The token command line; returns the exit code (0 done, 1 failed, 2 usage). */
export async function runTokenCommand(argv: readonly string[], deps: TokenCommandDeps): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'create': {
        const { values } = parseArgs({
          args: rest,
          options: {
            name: { type: 'string' },
            role: { type: 'string' },
            'source-root': { type: 'string', multiple: true },
          },
        });
        if (values.name === undefined || values.role === undefined) {
          deps.err(USAGE);
          return 2;
        }
        const sourceRoots = values['source-root'];
        const { token, record } = await createToken(deps.tokens, deps.config, {
          name: values.name,
          role: values.role,
          sourceRoots: sourceRoots && sourceRoots.length > 0 ? sourceRoots : null,
        });
        deps.err(`created ${record.role} token "${record.name}" (id ${record.id}); its secret is shown only now:`);
        deps.out(token);
        return 0;
      }
      case 'list': {
        const { values } = parseArgs({ args: rest, options: { json: { type: 'boolean' } } });
        const views = (await deps.tokens.list()).map(viewOf);
        if (values.json) deps.out(JSON.stringify(views, null, 2));
        else for (const line of table(views)) deps.out(line);
        return 0;
      }
      case 'revoke': {
        const { positionals } = parseArgs({ args: rest, allowPositionals: true, options: {} });
        const [target] = positionals;
        if (target === undefined || positionals.length !== 1) {
          deps.err(USAGE);
          return 2;
        }
        const found = await findToken(deps.tokens, target);
        if (!found) {
          deps.err(`no token with id or name "${target}"`);
          return 1;
        }
        try {
          const revoked = await revokeToken(deps.tokens, deps.revocations, found.id);
          deps.err(`revoked token "${found.name}" (id ${found.id}) at ${revoked?.revokedAt?.toISOString() ?? '?'}`);
          return 0;
        } catch (err) {
          if (!(err instanceof RevocationNotShared)) throw err;
          deps.err(
            `coffer token: token "${found.name}" (id ${found.id}) is revoked in MySQL, but Redis did not record it ` +
              `(${err.cause instanceof Error ? err.cause.message : String(err.cause)}): an API replica that cannot reach ` +
              'MySQL may still accept it for up to a minute after Redis is back; run the command again once Redis answers',
          );
          return 1;
        }
      }
      default:
        deps.err(USAGE);
        return 2;
    }
  } catch (err) {
    // parseArgs' and createToken's messages say what to fix.
    deps.err(`coffer token: ${err instanceof Error ? err.message : String(err)}`);
    return (err as { code?: unknown }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? 2 : 1;
  }
}
