import { resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { openSession, type CliIo, type Session } from '../context.js';
import { ApiError, CliError } from '../errors.js';
import { formatTable, orDash } from '../format.js';
import { collect } from '../options.js';

const ROLES = ['admin', 'operator', 'viewer'] as const;

/** A token as the API shows it: never its secret (except once, in the answer to create), never its hash. */
interface TokenView {
  id: number;
  name: string;
  role: string;
  sourceRoots: string[] | null;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

interface CreatedToken extends TokenView {
  token: string;
}

function formatRoots(roots: readonly string[] | null): string {
  return roots === null ? 'all' : roots.join(',');
}

/** `revoke 12` revokes id 12; `revoke ci` (or a numeric name no id matches) looks the name up in the list. */
async function revokeTarget(session: Session, target: string): Promise<TokenView> {
  const revoke = (id: number): Promise<TokenView> => session.client.request<TokenView>('DELETE', `/tokens/${id}`);
  const numeric = /^[0-9]{1,15}$/.test(target);
  let notFound: ApiError | undefined;
  if (numeric) {
    try {
      return await revoke(Number(target));
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) throw error;
      notFound = error;
    }
  }
  const { items } = await session.client.request<{ items: TokenView[] }>('GET', '/tokens');
  const named = items.find((token) => token.name === target);
  if (named) return revoke(named.id);
  throw notFound ?? new CliError(`no token named "${target}"`, 1);
}

export function registerTokenCommands(program: Command, io: CliIo): void {
  const tokens = program
    .command('token')
    .description('create, list and revoke API tokens over the HTTP API (admin)')
    .addHelpText(
      'after',
      '\nThese commands need an admin token and a running API. Without the API, on a host that reaches MySQL\n' +
        'and Redis, `pnpm --dir api token create|list|revoke` manages the tokens directly.',
    );

  tokens
    .command('create')
    .description('create a token and print its secret: shown only this once')
    .argument('<name>', "the token's name: unique, never reused")
    .addOption(new Option('--role <role>', 'what the token may do').choices(ROLES).makeOptionMandatory())
    .option(
      '--source-root <dir>',
      'limit the token to backing up inside this folder of SOURCE_ROOTS (repeatable; made absolute)',
      collect,
    )
    .action(async (name: string, options: { role: string; sourceRoot?: string[] }, command: Command) => {
      const session = await openSession(command, io);
      const created = await session.client.request<CreatedToken>('POST', '/tokens', {
        body: {
          name,
          role: options.role,
          sourceRoots: options.sourceRoot?.map((root) => resolve(root)),
        },
      });
      io.stderr.write(
        `created ${created.role} token "${created.name}" (id ${created.id}); ` +
          'its secret is shown only now: store it, Coffer keeps only its hash\n',
      );
      if (session.json) session.printJson(created);
      else session.print(created.token);
    });

  tokens
    .command('list')
    .description('list every token, revoked ones too, without secrets')
    .action(async (_options: unknown, command: Command) => {
      const session = await openSession(command, io);
      const page = await session.client.request<{ items: TokenView[] }>('GET', '/tokens');
      if (session.json) return session.printJson(page);
      session.print(
        formatTable(
          ['ID', 'NAME', 'ROLE', 'ROOTS', 'CREATED', 'LAST USED', 'REVOKED'],
          page.items.map((token) => [
            String(token.id),
            token.name,
            token.role,
            formatRoots(token.sourceRoots),
            token.createdAt,
            orDash(token.lastUsedAt),
            orDash(token.revokedAt),
          ]),
        ),
      );
    });

  tokens
    .command('revoke')
    .description('revoke a token: it stops working at once; its name stays taken')
    .argument('<id|name>', "the token's id (or its name)")
    .action(async (target: string, _options: unknown, command: Command) => {
      const session = await openSession(command, io);
      const revoked = await revokeTarget(session, target);
      if (session.json) session.printJson(revoked);
      else session.print(`token ${revoked.name} (id ${revoked.id}) revoked at ${orDash(revoked.revokedAt)}`);
    });
}
