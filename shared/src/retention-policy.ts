/**
 * Retention rules with restic's `forget` semantics, as a pure function: which snapshots of one
 * destination a policy keeps and which it removes. No clock, no I/O.
 *
 * What restic does, and so what this does (restic's manual, "Removing snapshots according to a
 * policy", doc/060_forget.rst, and internal/restic/snapshot_policy.go `ApplyPolicy`):
 * - Snapshots are walked newest first. Each `keep*` count rule remembers the last bucket it kept and
 *   how many buckets it may still use; a snapshot in a bucket other than the last one kept is kept
 *   and uses one. So each rule keeps the newest snapshot of each of the last N buckets that have a
 *   snapshot; buckets without one do not count. `keepLast` is the same with one bucket per snapshot.
 * - Buckets follow natural boundaries, not the time `forget` runs: hours, days, ISO weeks (Monday to
 *   Sunday, numbered in the ISO week-year, as Go's `ISOWeek`), months, years. We take them in UTC.
 * - Since restic 0.16 (#3624, PR #4366; labelled "oldest …" since PR #5039), a rule that still has
 *   buckets left when it reaches the oldest snapshot keeps that one too, even though it shares the
 *   newest kept snapshot's bucket: the current manual says "If there are not enough snapshots to keep
 *   one for each duration related --keep-* option, the oldest snapshot is kept additionally". We do
 *   the same; the reason is the rule's own name.
 * - `keepWithin` keeps every snapshot made strictly after the newest snapshot's time minus the
 *   duration (not "now"), subtracted as Go's `AddDate`: calendar years/months/days with overflow
 *   normalised (one month before March 31 is "February 31", which is March 3), hours as 3600 s.
 *   restic has no `w` unit; ours means 7 days. restic also ignores snapshots dated in the future
 *   when it picks the newest; a pure function has no "now", so the newest snapshot is the reference.
 * - A snapshot kept by any rule stays (the rules are ORed).
 * Beyond restic: the newest snapshot is always kept (every rule keeps it anyway), equal times are
 * ordered by id, and an empty policy is refused rather than read as "keep everything".
 */
import { Type, type Static } from '@sinclair/typebox';

const count = (description: string) => Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000, description }));

export const RetentionPolicySchema = Type.Object(
  {
    keepLast: count('Keep the newest N snapshots'),
    keepHourly: count('Keep the newest snapshot of each of the last N hours (UTC) that have one'),
    keepDaily: count('Keep the newest snapshot of each of the last N days (UTC) that have one'),
    keepWeekly: count('Keep the newest snapshot of each of the last N ISO weeks (Monday to Sunday, UTC) that have one'),
    keepMonthly: count('Keep the newest snapshot of each of the last N months (UTC) that have one'),
    keepYearly: count('Keep the newest snapshot of each of the last N years (UTC) that have one'),
    keepWithin: Type.Optional(
      Type.String({
        pattern: '^[1-9][0-9]{0,5}[hdwmy]$',
        description:
          'Keep every snapshot made within this long before the newest one: `Nh`, `Nd`, `Nw` (7 days), ' +
          '`Nm` or `Ny` (calendar months and years)',
      }),
    ),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type RetentionPolicy = Static<typeof RetentionPolicySchema>;

/** What the rules look at: a snapshot's id and when it was made. */
export interface RetentionCandidate {
  id: string;
  createdAt: Date;
}

/** Why a snapshot is kept: the rule that keeps it, or `newest` for the snapshot always kept. */
export type RetentionReason = 'last' | 'hourly' | 'daily' | 'weekly' | 'monthly' | 'yearly' | 'within' | 'newest';

export interface RetentionPlan {
  /** Ids kept, newest first. */
  keep: string[];
  /** Ids to remove, newest first. */
  remove: string[];
  /** For each kept id, the rules that keep it (`last`, `hourly`, …, `within`, `newest`), in that order. */
  reasons: Record<string, string[]>;
}

type CountRule = 'keepLast' | 'keepHourly' | 'keepDaily' | 'keepWeekly' | 'keepMonthly' | 'keepYearly';

/** A snapshot's bucket for each count rule; `keepLast` gives every snapshot its own. */
const BUCKET_RULES: readonly {
  field: CountRule;
  reason: RetentionReason;
  bucket: (at: Date, index: number) => string;
}[] = [
  { field: 'keepLast', reason: 'last', bucket: (_at, index) => String(index) },
  { field: 'keepHourly', reason: 'hourly', bucket: (at) => `${dayOf(at)}T${at.getUTCHours()}` },
  { field: 'keepDaily', reason: 'daily', bucket: (at) => dayOf(at) },
  { field: 'keepWeekly', reason: 'weekly', bucket: (at) => isoWeekOf(at) },
  { field: 'keepMonthly', reason: 'monthly', bucket: (at) => `${at.getUTCFullYear()}-${at.getUTCMonth() + 1}` },
  { field: 'keepYearly', reason: 'yearly', bucket: (at) => String(at.getUTCFullYear()) },
];

const WITHIN = /^([1-9][0-9]{0,5})([hdwmy])$/;
const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

function dayOf(at: Date): string {
  return `${at.getUTCFullYear()}-${at.getUTCMonth() + 1}-${at.getUTCDate()}`;
}

/** `2026-W53`: the ISO week-year and week, so 2027-01-01 falls in 2026's week 53. */
function isoWeekOf(at: Date): string {
  const midnight = Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), at.getUTCDate());
  const mondayBased = (at.getUTCDay() + 6) % 7;
  // The week belongs to the year that holds its Thursday.
  const thursday = new Date(midnight + (3 - mondayBased) * DAY_MS);
  const year = thursday.getUTCFullYear();
  const week = Math.floor((thursday.getTime() - Date.UTC(year, 0, 1)) / (7 * DAY_MS)) + 1;
  return `${year}-W${week}`;
}

/** The instant `within` before `newest`, as Go's `AddDate` (then hours) computes it in UTC. */
function withinCutoff(newest: Date, within: string): number {
  const match = WITHIN.exec(within);
  if (match === null) throw new RangeError(`keepWithin must be Nh, Nd, Nw, Nm or Ny, not ${JSON.stringify(within)}`);
  const amount = Number(match[1]);
  if (match[2] === 'h') return newest.getTime() - amount * HOUR_MS;
  const years = match[2] === 'y' ? amount : 0;
  const months = match[2] === 'm' ? amount : 0;
  const days = match[2] === 'd' ? amount : match[2] === 'w' ? 7 * amount : 0;
  const cutoff = new Date(newest.getTime());
  // setUTCFullYear normalises out-of-range months and days exactly as Go's time.Date does.
  cutoff.setUTCFullYear(newest.getUTCFullYear() - years, newest.getUTCMonth() - months, newest.getUTCDate() - days);
  return cutoff.getTime();
}

function checkPolicy(policy: RetentionPolicy): void {
  let rules = 0;
  for (const { field } of BUCKET_RULES) {
    const value = policy[field];
    if (value === undefined) continue;
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new RangeError(`${field} must be an integer of at least 1, not ${String(value)}`);
    }
    rules += 1;
  }
  if (policy.keepWithin !== undefined) rules += 1;
  // restic refuses to act on an empty policy too; here it is a caller's bug, not "keep all".
  if (rules === 0) throw new RangeError('A retention policy needs at least one rule');
}

/** Newest first; equal times by id, larger first, so the order is total and independent of input order. */
function newestFirst(a: RetentionCandidate, b: RetentionCandidate): number {
  const byTime = b.createdAt.getTime() - a.createdAt.getTime();
  if (byTime !== 0) return byTime;
  if (a.id === b.id) return 0;
  return a.id < b.id ? 1 : -1;
}

/**
 * Applies `policy` to the snapshots of one destination, as restic's `forget` would (see the top of
 * this file). Pure: the same input gives the same plan, whatever its order.
 * @throws RangeError for an empty or out-of-range policy, an invalid date or a repeated id.
 */
export function planRetention(snapshots: readonly RetentionCandidate[], policy: RetentionPolicy): RetentionPlan {
  checkPolicy(policy);
  const seen = new Set<string>();
  for (const { id, createdAt } of snapshots) {
    if (seen.has(id)) throw new RangeError(`Snapshot ${id} is listed twice`);
    seen.add(id);
    if (Number.isNaN(createdAt.getTime())) throw new RangeError(`Snapshot ${id} has an invalid date`);
  }

  const sorted = [...snapshots].sort(newestFirst);
  const newest = sorted[0];
  if (newest === undefined) return { keep: [], remove: [], reasons: {} };

  const rules = BUCKET_RULES.flatMap(({ field, reason, bucket }) => {
    const buckets = policy[field];
    return buckets === undefined ? [] : [{ reason, bucket, left: buckets, last: undefined as string | undefined }];
  });
  const cutoff = policy.keepWithin === undefined ? undefined : withinCutoff(newest.createdAt, policy.keepWithin);

  const keep: string[] = [];
  const remove: string[] = [];
  const reasons: [string, RetentionReason[]][] = [];
  sorted.forEach((snapshot, index) => {
    const why: RetentionReason[] = [];
    const oldest = index === sorted.length - 1;
    for (const rule of rules) {
      if (rule.left === 0) continue;
      const bucket = rule.bucket(snapshot.createdAt, index);
      // The oldest snapshot is kept by a rule that has buckets left, as restic ≥ 0.16 does.
      if (bucket !== rule.last || oldest) {
        rule.last = bucket;
        rule.left -= 1;
        why.push(rule.reason);
      }
    }
    if (cutoff !== undefined && snapshot.createdAt.getTime() > cutoff) why.push('within');
    if (index === 0 && why.length === 0) why.push('newest');

    if (why.length > 0) {
      keep.push(snapshot.id);
      reasons.push([snapshot.id, why]);
    } else {
      remove.push(snapshot.id);
    }
  });
  // fromEntries defines own properties, so an id such as `__proto__` is an ordinary key.
  return { keep, remove, reasons: Object.fromEntries(reasons) };
}
