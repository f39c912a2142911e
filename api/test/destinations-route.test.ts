import { randomUUID } from 'node:crypto';
import type { RowDataPacket } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RetentionPolicy } from '@coffer/shared';
import type { Principal } from '../src/auth/roles.js';
import {
  expectError,
  issueToken,
  pruneSnapshot,
  recordSnapshot,
  startApi,
  type ApiHarness,
  type Requester,
} from './helpers.js';

interface DestinationBody {
  name: string;
  snapshots: number;
  lastSnapshotAt: string | null;
  lastSuccessAt: string | null;
  lastFailureAt: string | null;
  retention: RetentionPolicy | null;
}

const RULES_SAID = 'keepLast, keepHourly, keepDaily, keepWeekly, keepMonthly, keepYearly or keepWithin';

/** A valid destination name of `length` characters: segments of 200 letters. */
function longName(length: number): string {
  return `${'d'.repeat(200)}/`.repeat(Math.ceil(length / 201)).slice(0, length - 1) + 'd';
}

function retentionUrl(name: string): string {
  return `/destinations/${encodeURIComponent(name)}/retention`;
}

/** A fresh destination name, so tests do not see each other's policies. */
const fresh = (prefix = 'dest') => `${prefix}-${randomUUID().slice(0, 8)}`;

describe('PUT and DELETE /destinations/:name/retention', () => {
  let api: ApiHarness;
  let asAdmin: Requester;
  let asOps: Requester;
  let asViewer: Requester;

  beforeAll(async () => {
    api = await startApi();
    const [ops, viewer] = await Promise.all([issueToken(api, 'ops', 'operator'), issueToken(api, 'watcher', 'viewer')]);
    asAdmin = (options) => api.request(api.adminToken, options);
    asOps = (options) => api.request(ops, options);
    asViewer = (options) => api.request(viewer, options);
  });

  afterAll(async () => {
    await api?.close();
  });

  // Sent as JSON text, so a string or number body is JSON too, not text/plain.
  const put = (send: Requester, url: string, payload?: unknown) =>
    send({
      method: 'PUT',
      url,
      ...(payload === undefined
        ? {}
        : { payload: JSON.stringify(payload), headers: { 'content-type': 'application/json' } }),
    });
  const remove = (send: Requester, url: string) => send({ method: 'DELETE', url });

  /** The policy stored for `name`, straight from MySQL, and who set it. */
  async function stored(name: string): Promise<{ policy: RetentionPolicy; updatedBy: string } | null> {
    const [rows] = await api.db.query<RowDataPacket[]>(
      'SELECT policy, updated_by FROM retention_policy WHERE destination = ?',
      [name],
    );
    const row = rows[0];
    return row
      ? { policy: JSON.parse(String(row.policy)) as RetentionPolicy, updatedBy: String(row.updated_by) }
      : null;
  }

  async function policyCount(): Promise<number> {
    const [rows] = await api.db.query<RowDataPacket[]>('SELECT COUNT(*) AS n FROM retention_policy');
    return Number(rows[0]?.n);
  }

  /** The retention GET /destinations shows for `name`; undefined when it is not listed. */
  async function listedRetention(name: string): Promise<RetentionPolicy | null | undefined> {
    const res = await asAdmin({ method: 'GET', url: '/destinations' });
    expect(res.statusCode, res.body).toBe(200);
    return res.json<{ items: DestinationBody[] }>().items.find((item) => item.name === name)?.retention;
  }

  describe('setting a policy', () => {
    it('answers 200 with the policy, its rules in a fixed order, and GET /destinations shows it', async () => {
      const name = fresh();
      const policy = {
        keepWithin: '30d',
        keepYearly: 2,
        keepMonthly: 12,
        keepWeekly: 4,
        keepDaily: 7,
        keepHourly: 24,
        keepLast: 3,
      };

      const res = await put(asAdmin, retentionUrl(name), policy);

      expect(res.statusCode, res.body).toBe(200);
      expect(res.body).toBe(
        '{"keepLast":3,"keepHourly":24,"keepDaily":7,"keepWeekly":4,"keepMonthly":12,"keepYearly":2,"keepWithin":"30d"}',
      );
      expect(await stored(name)).toEqual({ policy, updatedBy: 'admin' });
      expect(await listedRetention(name)).toEqual(policy);
    });

    it('takes a URL-encoded slash in the name: trees%2Fmain is the destination trees/main', async () => {
      const name = `${fresh('trees')}/main`;

      const res = await put(asAdmin, `/destinations/${name.replace('/', '%2F')}/retention`, { keepLast: 5 });

      expect(res.statusCode, res.body).toBe(200);
      expect(await stored(name)).toEqual({ policy: { keepLast: 5 }, updatedBy: 'admin' });
      expect(await listedRetention(name)).toEqual({ keepLast: 5 });
    });

    it('replaces the whole policy: rules not sent again are gone', async () => {
      const name = fresh();
      expect((await put(asAdmin, retentionUrl(name), { keepDaily: 7, keepWeekly: 4 })).statusCode).toBe(200);

      const res = await put(asAdmin, retentionUrl(name), { keepLast: 1 });

      expect(res.json()).toEqual({ keepLast: 1 });
      expect(await listedRetention(name)).toEqual({ keepLast: 1 });
    });

    it('needs no backup into the destination first', async () => {
      const name = fresh('not-yet-written');

      expect((await put(asAdmin, retentionUrl(name), { keepDaily: 1 })).statusCode).toBe(200);

      const [owners] = await api.db.query<RowDataPacket[]>('SELECT * FROM destination WHERE name = ?', [name]);
      expect(owners).toEqual([]);
    });

    it.each([
      ['keepLast', 1],
      ['keepHourly', 1],
      ['keepDaily', 1],
      ['keepWeekly', 1],
      ['keepMonthly', 1],
      ['keepYearly', 1_000_000],
      ['keepWithin', '1h'],
      ['keepWithin', '36h'],
      ['keepWithin', '30d'],
      ['keepWithin', '2w'],
      ['keepWithin', '6m'],
      ['keepWithin', '999999y'],
    ])('takes %s: %j on its own', async (rule, value) => {
      const name = fresh();

      const res = await put(asAdmin, retentionUrl(name), { [rule]: value });

      expect(res.statusCode, res.body).toBe(200);
      expect(res.json()).toEqual({ [rule]: value });
    });

    it('takes a name of 300 characters', async () => {
      const name = longName(300);

      const res = await put(asAdmin, retentionUrl(name), { keepLast: 2 });

      expect(res.statusCode, res.body).toBe(200);
      expect(await stored(name)).toEqual({ policy: { keepLast: 2 }, updatedBy: 'admin' });
    });
  });

  describe('refuses a bad policy with 400 VALIDATION_FAILED and a message a person can act on, storing nothing', () => {
    async function refused(payload: unknown): Promise<string> {
      const name = fresh('refused');
      const res = await put(asAdmin, retentionUrl(name), payload);
      const error = expectError(res, 400, 'VALIDATION_FAILED');
      expect(await stored(name)).toBeNull();
      return error.message;
    }

    it('an empty policy: it names the rules to choose from', async () => {
      expect(await refused({})).toBe(`body must name at least one rule: ${RULES_SAID}`);
    });

    it.each(['30 days', '30', 'd', '30D', '0d', '30s', '1.5d', '-1d', '1234567d', ''])(
      'keepWithin %j: it says what a span looks like and quotes the value',
      async (keepWithin) => {
        expect(await refused({ keepDaily: 7, keepWithin })).toBe(
          'body/keepWithin must be a span such as "30d": a whole number from 1 followed by h (hours), d (days), ' +
            `w (weeks), m (months) or y (years), got ${JSON.stringify(keepWithin)}`,
        );
      },
    );

    it('keepWithin as a number: the same words', async () => {
      expect(await refused({ keepWithin: 30 })).toMatch(/^body\/keepWithin must be a span such as "30d".*, got 30$/);
    });

    it.each([
      ['keepLast', 0],
      ['keepHourly', -1],
      ['keepDaily', 1.5],
      ['keepWeekly', '7'],
      ['keepMonthly', null],
      ['keepYearly', 1_000_001],
      ['keepDaily', true],
    ])('%s: %j: it says a whole number from 1, and quotes the value', async (rule, value) => {
      expect(await refused({ [rule]: value })).toBe(
        `body/${rule} must be a whole number from 1 to 1000000, got ${JSON.stringify(value)}`,
      );
    });

    it('an unknown rule, even beside good ones: it names it and the rules there are', async () => {
      expect(await refused({ keepDaily: 7, keepForever: true })).toBe(
        `body names "keepForever", which is not a rule; use ${RULES_SAID}`,
      );
    });

    it.each([
      ['a list', [{ keepDaily: 7 }]],
      ['a number', 7],
      ['a string', 'keepDaily=7'],
    ])('%s instead of an object', async (_case, payload) => {
      expect(await refused(payload)).toBe('body must be a JSON object of rules, such as {"keepDaily": 7}');
    });

    it('no body at all', async () => {
      const name = fresh('refused');

      const res = await put(asAdmin, retentionUrl(name));

      expect(expectError(res, 400, 'VALIDATION_FAILED').message).toBe(
        'body must be a JSON object of rules, such as {"keepDaily": 7}',
      );
      expect(await stored(name)).toBeNull();
    });
  });

  describe('refuses a bad destination name with 400 INVALID_DESTINATION', () => {
    // A bare `..` segment (`/destinations/../retention`) never arrives: clients resolve it, as URLs do.
    it.each([
      ['".." first', '..%2Fetc', /"\.\."/],
      ['".." inside', 'a%2F..%2Fb', /"\.\."/],
      ['".." last', 'a%2F..', /"\.\."/],
      ['"."', 'a%2F.%2Fb', /"\."/],
      ['a space', 'my%20backups', /only letters, digits/],
      ['a non-ASCII letter', 'caf%C3%A9', /only letters, digits/],
      ['an empty segment', 'a%2F%2Fb', /empty segments/],
      ['a trailing slash', 'a%2F', /empty segments/],
      ['a leading slash', '%2Fetc', /relative name/],
      ['a snapshot folder name', 'a%2F20261127T191045.123Z-x', /inside a snapshot/],
      ['the metadata folder', 'a%2F.coffer', /inside a snapshot/],
      ['a segment over 255 bytes', 'd'.repeat(256), /longer than 255 bytes/],
      ['over 1024 characters', encodeURIComponent(longName(1025)), /longer than 1024 characters/],
    ])('%s', async (_case, encoded, says) => {
      const policiesBefore = await policyCount();
      for (const method of ['PUT', 'DELETE'] as const) {
        const res = await asAdmin({
          method,
          url: `/destinations/${encoded}/retention`,
          ...(method === 'PUT' ? { payload: { keepLast: 1 } } : {}),
        });

        const error = expectError(res, 400, 'INVALID_DESTINATION');
        expect(error.message).toMatch(says);
      }
      expect(await policyCount()).toBe(policiesBefore);
    });
  });

  describe('removing a policy', () => {
    it('answers 204 with no body; the destination then shows no policy', async () => {
      const name = fresh();
      expect((await put(asAdmin, retentionUrl(name), { keepDaily: 7 })).statusCode).toBe(200);

      const res = await remove(asAdmin, retentionUrl(name));

      expect(res.statusCode, res.body).toBe(204);
      expect(res.body).toBe('');
      expect(await stored(name)).toBeNull();
      // Nothing else made it a destination: it is no longer listed.
      expect(await listedRetention(name)).toBeUndefined();
    });

    it('takes a URL-encoded slash in the name', async () => {
      const name = `${fresh('trees')}/main`;
      expect((await put(asAdmin, retentionUrl(name), { keepDaily: 7 })).statusCode).toBe(200);

      const res = await remove(asAdmin, `/destinations/${name.replace('/', '%2F')}/retention`);

      expect(res.statusCode, res.body).toBe(204);
      expect(await stored(name)).toBeNull();
    });

    it('of a destination without one: 404 RETENTION_NOT_FOUND naming it; a second DELETE too', async () => {
      const name = fresh();
      expect((await put(asAdmin, retentionUrl(name), { keepDaily: 7 })).statusCode).toBe(200);
      expect((await remove(asAdmin, retentionUrl(name))).statusCode).toBe(204);

      const again = await remove(asAdmin, retentionUrl(name));
      const never = await remove(asAdmin, retentionUrl('never-had-one'));

      expect(expectError(again, 404, 'RETENTION_NOT_FOUND').message).toBe(
        `destination "${name}" has no retention policy`,
      );
      expect(expectError(never, 404, 'RETENTION_NOT_FOUND').message).toContain('"never-had-one"');
    });
  });

  describe('is for admins only', () => {
    it.each([
      ['an operator', () => asOps],
      ['a viewer', () => asViewer],
    ])('%s gets 403 FORBIDDEN for PUT and DELETE, and the policy stays as it was', async (_case, sender) => {
      const name = fresh();
      expect((await put(asAdmin, retentionUrl(name), { keepDaily: 7 })).statusCode).toBe(200);

      const set = await put(sender(), retentionUrl(name), { keepLast: 1 });
      const removed = await remove(sender(), retentionUrl(name));

      expectError(set, 403, 'FORBIDDEN');
      expectError(removed, 403, 'FORBIDDEN');
      expect(await stored(name)).toEqual({ policy: { keepDaily: 7 }, updatedBy: 'admin' });
    });

    it('without a token: 401, and nothing changes', async () => {
      const name = fresh();

      const res = await put((options) => api.request(null, options), retentionUrl(name), { keepDaily: 7 });

      expectError(res, 401, 'UNAUTHENTICATED');
      expect(await stored(name)).toBeNull();
    });

    it('another admin token may set it; the policy records who set it last', async () => {
      const other = await issueToken(api, 'second-admin', 'admin');
      const name = fresh();

      const res = await put((options) => api.request(other, options), retentionUrl(name), { keepWeekly: 2 });

      expect(res.statusCode, res.body).toBe(200);
      expect(await stored(name)).toEqual({ policy: { keepWeekly: 2 }, updatedBy: 'second-admin' });
    });
  });
});

describe('GET /destinations', () => {
  let api: ApiHarness;
  const senders: Record<'admin' | 'ops' | 'bob' | 'watcher' | 'idle', Requester> = {} as never;

  const at = (iso: string) => new Date(iso).toISOString();
  const operator = (name: string): Principal => ({ id: null, name, role: 'operator', sourceRoots: null });

  /** A failed backup into `destination`, as a worker logs it: queued, active, failed at `date`. */
  async function failedBackup(destination: string, date: string, action: 'backup' | 'restore' = 'backup') {
    const row = {
      action,
      parameter: '/srv/data',
      jobId: randomUUID(),
      attempt: 1,
      worker: 'test',
      destination,
      actor: 'ops',
    } as const;
    await api.app.logStore.append([
      { ...row, status: 'queued', date: new Date(Date.parse(date) - 2000) },
      { ...row, status: 'active', date: new Date(Date.parse(date) - 1000) },
      { ...row, status: 'failed', code: 'SOURCE_MISSING', message: 'gone', date },
    ]);
  }

  async function snapshot(destination: string, createdAt: string, actor = 'ops') {
    return recordSnapshot(api.app, api.env.backups, { destination, source: '/srv/data', actor, createdAt });
  }

  beforeAll(async () => {
    api = await startApi();
    const tokens = await Promise.all(
      (['ops', 'bob', 'watcher', 'idle'] as const).map((name) =>
        issueToken(api, name, name === 'watcher' ? 'viewer' : 'operator'),
      ),
    );
    senders.admin = (options) => api.request(api.adminToken, options);
    (['ops', 'bob', 'watcher', 'idle'] as const).forEach((name, i) => {
      senders[name] = (options) => api.request(tokens[i] ?? '', options);
    });

    // alpha (ops): three snapshots, one of them an admin's backup, the newest pruned; two failed
    // backups and a failed restore; a policy.
    await api.app.destinations.authorise(operator('ops'), 'alpha');
    await snapshot('alpha', '2026-01-01T01:00:00.000Z');
    await snapshot('alpha', '2026-01-02T01:00:00.000Z', 'admin');
    const pruned = await snapshot('alpha', '2026-01-03T01:00:00.000Z');
    await pruneSnapshot(api.app, pruned.id);
    await failedBackup('alpha', '2026-01-04T05:00:00.000Z');
    await failedBackup('alpha', '2026-01-02T05:00:00.000Z');
    await failedBackup('alpha', '2026-01-09T05:00:00.000Z', 'restore');
    await api.app.retention.set('alpha', { keepDaily: 7 }, 'admin');
    // delta (ops): claimed, nothing else yet.
    await api.app.destinations.authorise(operator('ops'), 'delta');
    // beta/inner (bob): one snapshot, every one of them pruned.
    await api.app.destinations.authorise(operator('bob'), 'beta/inner');
    const gone = await snapshot('beta/inner', '2026-02-01T00:00:00.000Z', 'bob');
    await pruneSnapshot(api.app, gone.id);
    // gamma and Zulu: a policy only. legacy: a snapshot without an owner (made before owners were kept).
    await api.app.retention.set('gamma', { keepLast: 3, keepWithin: '2w' }, 'admin');
    await api.app.retention.set('Zulu', { keepYearly: 1 }, 'admin');
    await snapshot('legacy', '2025-12-31T23:59:59.999Z', 'admin');
    // A failed backup into a destination nobody owns and that has no snapshot or policy: not listed.
    await failedBackup('nowhere', '2026-01-05T00:00:00.000Z');
  });

  afterAll(async () => {
    await api?.close();
  });

  async function names(send: Requester): Promise<string[]> {
    return (await items(send)).map((item) => item.name);
  }

  async function items(send: Requester): Promise<DestinationBody[]> {
    const res = await send({ method: 'GET', url: '/destinations' });
    expect(res.statusCode, res.body).toBe(200);
    return res.json<{ items: DestinationBody[] }>().items;
  }

  const alpha: DestinationBody = {
    name: 'alpha',
    snapshots: 2,
    lastSnapshotAt: at('2026-01-02T01:00:00.000Z'),
    lastSuccessAt: at('2026-01-03T01:00:00.000Z'),
    lastFailureAt: at('2026-01-04T05:00:00.000Z'),
    retention: { keepDaily: 7 },
  };
  const nothingYet = { snapshots: 0, lastSnapshotAt: null, lastSuccessAt: null, lastFailureAt: null };
  const delta: DestinationBody = { name: 'delta', ...nothingYet, retention: null };

  it('lists every destination with an owner, a snapshot or a policy, sorted by name, with its figures', async () => {
    expect(await items(senders.admin)).toEqual([
      { name: 'Zulu', ...nothingYet, retention: { keepYearly: 1 } },
      alpha,
      {
        name: 'beta/inner',
        snapshots: 0,
        lastSnapshotAt: null,
        lastSuccessAt: at('2026-02-01T00:00:00.000Z'),
        lastFailureAt: null,
        retention: null,
      },
      delta,
      { name: 'gamma', ...nothingYet, retention: { keepLast: 3, keepWithin: '2w' } },
      {
        name: 'legacy',
        snapshots: 1,
        lastSnapshotAt: at('2025-12-31T23:59:59.999Z'),
        lastSuccessAt: at('2025-12-31T23:59:59.999Z'),
        lastFailureAt: null,
        retention: null,
      },
    ]);
  });

  it('shows a viewer every destination, as an admin sees them', async () => {
    expect(await items(senders.watcher)).toEqual(await items(senders.admin));
  });

  it('shows an operator only the destinations it owns, with every snapshot and failure in them', async () => {
    expect(await items(senders.ops)).toEqual([alpha, delta]);
    expect(await names(senders.bob)).toEqual(['beta/inner']);
  });

  it('shows an operator that owns nothing an empty list', async () => {
    expect(await items(senders.idle)).toEqual([]);
  });

  it('follows a policy set or removed through the API', async () => {
    expect(
      (await senders.admin({ method: 'PUT', url: '/destinations/delta/retention', payload: { keepLast: 9 } }))
        .statusCode,
    ).toBe(200);
    expect((await items(senders.ops)).find((item) => item.name === 'delta')?.retention).toEqual({ keepLast: 9 });

    expect((await senders.admin({ method: 'DELETE', url: '/destinations/delta/retention' })).statusCode).toBe(204);
    expect((await items(senders.ops)).find((item) => item.name === 'delta')?.retention).toBeNull();
  });

  it('refuses a query parameter it does not know: 400', async () => {
    expectError(await senders.admin({ method: 'GET', url: '/destinations?owner=ops' }), 400, 'VALIDATION_FAILED');
  });

  it('without a token: 401', async () => {
    expectError(await api.request(null, { method: 'GET', url: '/destinations' }), 401, 'UNAUTHENTICATED');
  });
});
