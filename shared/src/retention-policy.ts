/**
 * Retention rules with restic's `forget` semantics, as a pure function (placeholder: being written).
 */
import { Type, type Static } from '@sinclair/typebox';

const count = (description: string) => Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000, description }));

export const RetentionPolicySchema = Type.Object(
  {
    keepLast: count('Keep the newest N snapshots'),
    keepHourly: count('Keep the newest snapshot of each of the last N hours (UTC) that have one'),
    keepDaily: count('Keep the newest snapshot of each of the last N days (UTC) that have one'),
    keepWeekly: count('Keep the newest snapshot of each of the last N ISO weeks (UTC) that have one'),
    keepMonthly: count('Keep the newest snapshot of each of the last N months (UTC) that have one'),
    keepYearly: count('Keep the newest snapshot of each of the last N years (UTC) that have one'),
    keepWithin: Type.Optional(
      Type.String({
        pattern: '^[1-9][0-9]{0,5}[hdwmy]$',
        description: 'Keep every snapshot made within this long before the newest one: `Nh`, `Nd`, `Nw`, `Nm` or `Ny`',
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

export interface RetentionPlan {
  /** Ids kept, newest first. */
  keep: string[];
  /** Ids to remove, newest first. */
  remove: string[];
  /** For each kept id, the rules that keep it (`last`, `hourly`, …, `within`, `newest`). */
  reasons: Record<string, string[]>;
}

export function planRetention(_snapshots: readonly RetentionCandidate[], _policy: RetentionPolicy): RetentionPlan {
  throw new Error('not written yet');
}
