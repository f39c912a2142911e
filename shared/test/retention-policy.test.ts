import { describe, expect, it } from 'vitest';
import { planRetention, type RetentionCandidate, type RetentionPlan, type RetentionPolicy } from '@coffer/shared';

/** `[id, ISO time]` pairs; every time is UTC. */
type Fixture = readonly (readonly [string, string])[];

const candidates = (fixture: Fixture): RetentionCandidate[] =>
  fixture.map(([id, iso]) => ({ id, createdAt: new Date(iso) }));

/** Plans, and checks what holds for every plan: keep and remove split the input, newest first. */
function plan(snapshots: readonly RetentionCandidate[], policy: RetentionPolicy): RetentionPlan {
  const result = planRetention(snapshots, policy);
  const newestFirst = [...snapshots]
    .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0))
    .map(({ id }) => id);
  const kept = new Set(result.keep);
  expect(result.keep).toEqual(newestFirst.filter((id) => kept.has(id)));
  expect(result.remove).toEqual(newestFirst.filter((id) => !kept.has(id)));
  expect(Object.keys(result.reasons).sort()).toEqual([...result.keep].sort());
  if (newestFirst.length > 0) expect(result.keep[0]).toBe(newestFirst[0]);
  return result;
}

/** One snapshot a day at 03:00 UTC from `from` to `to` inclusive, id `YYYY-MM-DD`. */
function daily(from: string, to: string): Fixture {
  const days: [string, string][] = [];
  for (let t = Date.parse(`${from}T03:00:00Z`); t <= Date.parse(`${to}T03:00:00Z`); t += 86_400_000) {
    const iso = new Date(t).toISOString();
    days.push([iso.slice(0, 10), iso]);
  }
  return days;
}

// restic's manual, "Removing snapshots according to a policy": one backup every Sunday for 12 weeks.
const TWELVE_SUNDAYS: Fixture = [
  ['0a1f9759', '2019-09-01T11:00:00Z'],
  ['46cfe4d5', '2019-09-08T11:00:00Z'],
  ['f6b1f037', '2019-09-15T11:00:00Z'],
  ['eb430a5d', '2019-09-22T11:00:00Z'],
  ['8cf1cb9a', '2019-09-29T11:00:00Z'],
  ['5d33b116', '2019-10-06T11:00:00Z'],
  ['b9553125', '2019-10-13T11:00:00Z'],
  ['e1a7b58b', '2019-10-20T11:00:00Z'],
  ['8f8018c0', '2019-10-27T11:00:00Z'],
  ['59403279', '2019-11-03T11:00:00Z'],
  ['dfee9fb4', '2019-11-10T11:00:00Z'],
  ['e1ae2f40', '2019-11-17T11:00:00Z'],
];

// A month of snapshots, every six hours through January 2026: ids `2026-01-DDTHH`.
const JANUARY_EVERY_SIX_HOURS: Fixture = Array.from({ length: 31 * 4 }, (_, i) => {
  const iso = new Date(Date.UTC(2026, 0, 1, 6 * i)).toISOString();
  return [iso.slice(0, 13), iso] as const;
});

// Daily backups from 2025-01-01 to Sunday 2026-05-31, the last day of a month: the manual's
// "one backup every day" example, with a newest snapshot where its counts come out exactly.
const DAILY_TO_MAY_2026 = daily('2025-01-01', '2026-05-31');

describe("restic's documented examples", () => {
  it('--keep-last 1 keeps the newer of two snapshots taken a minute apart', () => {
    const result = plan(
      candidates([
        ['4bba301e', '2017-02-21T10:49:18Z'],
        ['8c02b94b', '2017-02-21T10:48:33Z'],
      ]),
      { keepLast: 1 },
    );
    expect(result).toEqual({ keep: ['4bba301e'], remove: ['8c02b94b'], reasons: { '4bba301e': ['last'] } });
  });

  it('--keep-daily 4 over twelve Sundays keeps the last four Sundays (days without a backup do not count)', () => {
    const result = plan(candidates(TWELVE_SUNDAYS), { keepDaily: 4 });
    expect(result.keep).toEqual(['e1ae2f40', 'dfee9fb4', '59403279', '8f8018c0']);
    expect(result.remove).toEqual([
      'e1a7b58b',
      'b9553125',
      '5d33b116',
      '8cf1cb9a',
      'eb430a5d',
      'f6b1f037',
      '46cfe4d5',
      '0a1f9759',
    ]);
    expect(result.reasons).toEqual({
      e1ae2f40: ['daily'],
      dfee9fb4: ['daily'],
      '59403279': ['daily'],
      '8f8018c0': ['daily'],
    });
  });

  it('--keep-daily 7 --keep-weekly 5 --keep-monthly 12: 7 dailies, 4 more weeklies, 11 more monthlies', () => {
    const result = plan(candidates(DAILY_TO_MAY_2026), { keepDaily: 7, keepWeekly: 5, keepMonthly: 12 });
    // Daily: May 25..31. Weekly (Monday to Sunday): May 31 again, then the Sundays May 24, 17, 10, 3.
    // Monthly: May 31 again, then the last day of each month back to June 2025 (11 more).
    const expected = [
      '2026-05-31',
      '2026-05-30',
      '2026-05-29',
      '2026-05-28',
      '2026-05-27',
      '2026-05-26',
      '2026-05-25',
      '2026-05-24',
      '2026-05-17',
      '2026-05-10',
      '2026-05-03',
      '2026-04-30',
      '2026-03-31',
      '2026-02-28',
      '2026-01-31',
      '2025-12-31',
      '2025-11-30',
      '2025-10-31',
      '2025-09-30',
      '2025-08-31',
      '2025-07-31',
      '2025-06-30',
    ];
    expect(result.keep).toEqual(expected);
    expect(result.keep).toHaveLength(7 + 4 + 11);
    expect(result.remove).toHaveLength(DAILY_TO_MAY_2026.length - 22);
    expect(result.reasons['2026-05-31']).toEqual(['daily', 'weekly', 'monthly']);
    expect(result.reasons['2026-05-25']).toEqual(['daily']);
    expect(result.reasons['2026-05-24']).toEqual(['weekly']);
    expect(result.reasons['2026-04-30']).toEqual(['monthly']);
  });

  it('adding --keep-yearly 75 keeps 2025-12-31 for 2025 and, buckets left over, the oldest snapshot too', () => {
    const result = plan(candidates(DAILY_TO_MAY_2026), {
      keepDaily: 7,
      keepWeekly: 5,
      keepMonthly: 12,
      keepYearly: 75,
    });
    // The yearly rule uses 2026 (May 31) and 2025 (December 31, already a monthly); with 73 years
    // left it also keeps the oldest snapshot, 2025-01-01, though that one is in 2025's bucket too.
    expect(result.keep).toHaveLength(23);
    expect(result.keep.slice(-2)).toEqual(['2025-06-30', '2025-01-01']);
    expect(result.reasons['2026-05-31']).toEqual(['daily', 'weekly', 'monthly', 'yearly']);
    expect(result.reasons['2025-12-31']).toEqual(['monthly', 'yearly']);
    expect(result.reasons['2025-01-01']).toEqual(['yearly']);
  });
});

describe('each rule keeps the newest snapshot of its last N buckets', () => {
  it.each<[string, RetentionPolicy, Fixture, string[]]>([
    // A month of snapshots every six hours: the 18:00 one is the newest of each day.
    [
      'keepDaily 7 over a month: the last of each of the 7 newest days',
      { keepDaily: 7 },
      JANUARY_EVERY_SIX_HOURS,
      [
        '2026-01-31T18',
        '2026-01-30T18',
        '2026-01-29T18',
        '2026-01-28T18',
        '2026-01-27T18',
        '2026-01-26T18',
        '2026-01-25T18',
      ],
    ],
    // Each six-hourly snapshot is alone in its hour.
    [
      'keepHourly 3: the three newest hours that have one',
      { keepHourly: 3 },
      JANUARY_EVERY_SIX_HOURS,
      ['2026-01-31T18', '2026-01-31T12', '2026-01-31T06'],
    ],
    // Weeks of January 2026 (ISO, Monday first): 26–31, 19–25, 12–18; Sundays are their last days.
    ['keepWeekly 3', { keepWeekly: 3 }, JANUARY_EVERY_SIX_HOURS, ['2026-01-31T18', '2026-01-25T18', '2026-01-18T18']],
    // keepLast 2 overlaps keepDaily 2 on the newest: 31T18 (both), 31T12 (last), 30T18 (daily).
    [
      'keepLast 2 with keepDaily 2',
      { keepLast: 2, keepDaily: 2 },
      JANUARY_EVERY_SIX_HOURS,
      ['2026-01-31T18', '2026-01-31T12', '2026-01-30T18'],
    ],
    // Twelve Sundays, one a week: weekly 4 is daily 4.
    [
      'keepWeekly 4 over twelve Sundays',
      { keepWeekly: 4 },
      TWELVE_SUNDAYS,
      ['e1ae2f40', 'dfee9fb4', '59403279', '8f8018c0'],
    ],
    // Months: November (17th), October (27th).
    ['keepMonthly 2 over twelve Sundays', { keepMonthly: 2 }, TWELVE_SUNDAYS, ['e1ae2f40', '8f8018c0']],
  ])('%s', (_name, policy, fixture, keep) => {
    expect(plan(candidates(fixture), policy).keep).toEqual(keep);
  });

  it('gives the rules that keep a snapshot as its reasons, in the order last, …, yearly, within', () => {
    const result = plan(candidates(JANUARY_EVERY_SIX_HOURS), { keepLast: 2, keepDaily: 2, keepWithin: '13h' });
    // keepWithin 13h: strictly after 2026-01-31T05:00, so 31T06, 31T12 and 31T18.
    expect(result.keep).toEqual(['2026-01-31T18', '2026-01-31T12', '2026-01-31T06', '2026-01-30T18']);
    expect(result.reasons).toEqual({
      '2026-01-31T18': ['last', 'daily', 'within'],
      '2026-01-31T12': ['last', 'within'],
      '2026-01-31T06': ['within'],
      '2026-01-30T18': ['daily'],
    });
  });
});

describe('several snapshots in one bucket', () => {
  // Five snapshots over three hours of one day.
  const HOURS: Fixture = [
    ['h12-30', '2026-04-02T12:30:00Z'],
    ['h11-50', '2026-04-02T11:50:00Z'],
    ['h11-10', '2026-04-02T11:10:00Z'],
    ['h10-40', '2026-04-02T10:40:00Z'],
    ['h10-05', '2026-04-02T10:05:00Z'],
  ];

  it('keeps only the newest of each hour', () => {
    const result = plan(candidates(HOURS), { keepHourly: 2 });
    expect(result.keep).toEqual(['h12-30', 'h11-50']);
    expect(result.remove).toEqual(['h11-10', 'h10-40', 'h10-05']);
  });

  it('keeps the oldest snapshot as well when fewer buckets than N exist (restic ≥ 0.16)', () => {
    // Three hours for five buckets: 12:30, 11:50, 10:40 are the newest of their hours, and with two
    // buckets left the rule also keeps 10:05, the oldest, though 10:40 already stands for its hour.
    // This is restic issue #4806's case, which restic labels "oldest hourly snapshot".
    const result = plan(candidates(HOURS), { keepHourly: 5 });
    expect(result.keep).toEqual(['h12-30', 'h11-50', 'h10-40', 'h10-05']);
    expect(result.remove).toEqual(['h11-10']);
    expect(result.reasons['h10-05']).toEqual(['hourly']);
  });

  it('does not keep the oldest once the rule has used its N buckets', () => {
    expect(plan(candidates(HOURS), { keepHourly: 3 }).keep).toEqual(['h12-30', 'h11-50', 'h10-40']);
  });

  it.each<[RetentionPolicy, string[]]>([
    // Thirty-one days for forty buckets: every 18:00 and, buckets left over, the oldest (1 January 00:00).
    [
      { keepDaily: 40 },
      [...Array.from({ length: 31 }, (_, i) => `2026-01-${String(31 - i).padStart(2, '0')}T18`), '2026-01-01T00'],
    ],
    // One month for three: the newest, and the oldest.
    [{ keepMonthly: 3 }, ['2026-01-31T18', '2026-01-01T00']],
    // One year for one bucket: the rule is used up at the newest, so the oldest goes.
    [{ keepYearly: 1 }, ['2026-01-31T18']],
  ])('over a month of six-hourly snapshots %j keeps %j', (policy, keep) => {
    expect(plan(candidates(JANUARY_EVERY_SIX_HOURS), policy).keep).toEqual(keep);
  });

  it('--keep-monthly 4 over twelve Sundays in three months keeps one a month and the oldest', () => {
    expect(plan(candidates(TWELVE_SUNDAYS), { keepMonthly: 4 }).keep).toEqual([
      'e1ae2f40', // November
      '8f8018c0', // October
      '8cf1cb9a', // September
      '0a1f9759', // 1 September, the oldest: one monthly bucket was left
    ]);
  });
});

describe('buckets are UTC and weeks are ISO weeks', () => {
  it('puts 2026-12-31 and 2027-01-01 in the same week: ISO week 53 of 2026', () => {
    // 2026 starts on a Thursday, so it has 53 ISO weeks; week 53 runs Monday 2026-12-28 to Sunday 2027-01-03.
    const result = plan(
      candidates([
        ['2027-01-04', '2027-01-04T09:00:00Z'], // Monday: 2027-W01
        ['2027-01-01', '2027-01-01T09:00:00Z'], // Friday: 2026-W53, newest of that week
        ['2026-12-31', '2026-12-31T09:00:00Z'], // Thursday: 2026-W53 too
        ['2026-12-28', '2026-12-28T00:00:00Z'], // Monday 00:00: the first moment of 2026-W53
        ['2026-12-27', '2026-12-27T23:59:59Z'], // Sunday 23:59:59: the last moment of 2026-W52
        ['2026-12-20', '2026-12-20T09:00:00Z'], // Sunday: 2026-W51
      ]),
      { keepWeekly: 3 },
    );
    expect(result.keep).toEqual(['2027-01-04', '2027-01-01', '2026-12-27']);
    expect(result.remove).toEqual(['2026-12-31', '2026-12-28', '2026-12-20']);
  });

  it('counts years by the calendar, not the ISO week-year', () => {
    const result = plan(
      candidates([
        ['2027-01-01', '2027-01-01T09:00:00Z'],
        ['2026-12-31', '2026-12-31T09:00:00Z'],
        ['2026-06-01', '2026-06-01T09:00:00Z'],
      ]),
      { keepYearly: 2 },
    );
    expect(result.keep).toEqual(['2027-01-01', '2026-12-31']);
  });

  it('splits days at UTC midnight', () => {
    // 23:30 and 00:30 UTC are one evening in New York, but two days here.
    const result = plan(
      candidates([
        ['after-midnight', '2026-03-11T00:30:00Z'],
        ['before-midnight', '2026-03-10T23:30:00Z'],
        ['day-before', '2026-03-09T12:00:00Z'],
      ]),
      { keepDaily: 2 },
    );
    expect(result.keep).toEqual(['after-midnight', 'before-midnight']);
    expect(result.remove).toEqual(['day-before']);
  });
});

describe('keepWithin counts back from the newest snapshot, with calendar months and years', () => {
  it.each<[string, string, string, Fixture, string[]]>([
    // The cutoff is excluded, as restic keeps a snapshot only if it is after newest − duration.
    [
      '1d keeps what is strictly less than a day older',
      '1d',
      '2026-03-10T12:00:00Z',
      [
        ['1ms-inside', '2026-03-09T12:00:00.001Z'],
        ['exactly-1d', '2026-03-09T12:00:00.000Z'],
      ],
      ['1ms-inside'],
    ],
    [
      '36h',
      '36h',
      '2026-03-10T12:00:00Z',
      [
        ['35h', '2026-03-09T01:00:00Z'],
        ['37h', '2026-03-08T23:00:00Z'],
      ],
      ['35h'],
    ],
    [
      '2w is 14 days',
      '2w',
      '2026-01-15T00:00:00Z',
      [
        ['13d23h', '2026-01-01T01:00:00Z'],
        ['14d', '2026-01-01T00:00:00Z'],
      ],
      ['13d23h'],
    ],
    // One month before 15 March is 15 February.
    [
      '1m from mid-March reaches 15 February',
      '1m',
      '2026-03-15T00:00:00Z',
      [
        ['feb-15-00-01', '2026-02-15T00:01:00Z'],
        ['feb-14-23-59', '2026-02-14T23:59:00Z'],
      ],
      ['feb-15-00-01'],
    ],
    // One month before 31 March is "31 February", which Go's AddDate (and restic) normalise to
    // 3 March 2026: 1 March is more than "one month" before 31 March.
    [
      '1m from 31 March reaches only 3 March (February 31 overflows)',
      '1m',
      '2026-03-31T12:00:00Z',
      [
        ['mar-03-12-01', '2026-03-03T12:01:00Z'],
        ['mar-03-12-00', '2026-03-03T12:00:00Z'],
        ['mar-01', '2026-03-01T12:00:00Z'],
        ['feb-28', '2026-02-28T12:00:00Z'],
      ],
      ['mar-03-12-01'],
    ],
    // In a leap year "31 February" is 2 March.
    [
      '1m from 31 March 2024 reaches 2 March',
      '1m',
      '2024-03-31T12:00:00Z',
      [
        ['mar-02-13', '2024-03-02T13:00:00Z'],
        ['mar-02-12', '2024-03-02T12:00:00Z'],
      ],
      ['mar-02-13'],
    ],
    [
      '3m from 31 May reaches 3 March (February 31 again)',
      '3m',
      '2026-05-31T00:00:00Z',
      [
        ['mar-03-01', '2026-03-03T01:00:00Z'],
        ['mar-02', '2026-03-02T23:00:00Z'],
      ],
      ['mar-03-01'],
    ],
    // One year before 29 February 2024 is "29 February 2023", that is 1 March 2023.
    [
      '1y from 29 February reaches 1 March',
      '1y',
      '2024-02-29T10:00:00Z',
      [
        ['mar-01-10-01', '2023-03-01T10:01:00Z'],
        ['mar-01-10-00', '2023-03-01T10:00:00Z'],
        ['feb-28', '2023-02-28T23:00:00Z'],
      ],
      ['mar-01-10-01'],
    ],
  ])('%s', (_name, keepWithin, newest, older, keepOlder) => {
    const result = plan(candidates([['newest', newest], ...older]), { keepWithin });
    expect(result.keep).toEqual(['newest', ...keepOlder]);
    for (const id of result.keep) expect(result.reasons[id]).toEqual(['within']);
  });

  it('keeps old snapshots when the newest is old too: the reference is the newest snapshot, not now', () => {
    const result = plan(
      candidates([
        ['2001-06-02', '2001-06-02T08:00:00Z'],
        ['2001-06-01', '2001-06-01T09:00:00Z'],
        ['2001-05-30', '2001-05-30T08:00:00Z'],
      ]),
      { keepWithin: '2d' },
    );
    expect(result.keep).toEqual(['2001-06-02', '2001-06-01']);
    expect(result.remove).toEqual(['2001-05-30']);
  });
});

describe('order, ties and edge cases', () => {
  const sorted = candidates(TWELVE_SUNDAYS);
  const expected = planRetention(sorted, { keepDaily: 4, keepMonthly: 3 });

  it.each([
    ['oldest first', sorted],
    ['newest first', [...sorted].reverse()],
    ['shuffled', [5, 0, 11, 3, 8, 1, 10, 6, 2, 9, 4, 7].map((i) => sorted[i] as RetentionCandidate)],
  ])('gives the same plan whatever the input order (%s)', (_name, input) => {
    expect(input).toHaveLength(12);
    const result = plan(input, { keepDaily: 4, keepMonthly: 3 });
    expect(result).toEqual(expected);
    // Daily 4: the four newest Sundays; monthly 3: November, October (27th, already daily), September 29.
    expect(result.keep).toEqual(['e1ae2f40', 'dfee9fb4', '59403279', '8f8018c0', '8cf1cb9a']);
  });

  it('does not reorder or change its input', () => {
    const input = candidates(TWELVE_SUNDAYS);
    const copy = input.map((c) => ({ ...c }));
    planRetention(input, { keepLast: 1 });
    expect(input).toEqual(copy);
  });

  it.each([
    [
      'a before b',
      [
        ['a', '2026-05-01T10:00:00Z'],
        ['b', '2026-05-01T10:00:00Z'],
        ['c', '2026-05-01T09:00:00Z'],
      ],
    ],
    [
      'b before a',
      [
        ['b', '2026-05-01T10:00:00Z'],
        ['c', '2026-05-01T09:00:00Z'],
        ['a', '2026-05-01T10:00:00Z'],
      ],
    ],
  ] as [string, Fixture][])('breaks equal times by id, the larger counting as newer (%s)', (_name, fixture) => {
    expect(plan(candidates(fixture), { keepLast: 1 })).toEqual({
      keep: ['b'],
      remove: ['a', 'c'],
      reasons: { b: ['last'] },
    });
    // Same hour for all three, so keepHourly 1 keeps the same one.
    expect(plan(candidates(fixture), { keepHourly: 1 }).keep).toEqual(['b']);
  });

  it('gives an empty plan for no snapshots', () => {
    expect(planRetention([], { keepDaily: 7 })).toEqual({ keep: [], remove: [], reasons: {} });
  });

  it.each<RetentionPolicy>([
    { keepLast: 1 },
    { keepHourly: 1 },
    { keepDaily: 1 },
    { keepWeekly: 1 },
    { keepMonthly: 1 },
    { keepYearly: 1 },
    { keepWithin: '1h' },
  ])('always keeps the newest snapshot (%j)', (policy) => {
    const result = plan(candidates(DAILY_TO_MAY_2026), policy);
    expect(result.keep).toEqual(['2026-05-31']);
    expect(result.reasons['2026-05-31']).toHaveLength(1);
  });

  it('keeps the single snapshot there is', () => {
    expect(plan(candidates([['only', '2026-01-01T00:00:00Z']]), { keepWithin: '1h' })).toEqual({
      keep: ['only'],
      remove: [],
      reasons: { only: ['within'] },
    });
  });

  it.each<RetentionPolicy>([{ keepLast: 1_000_000 }, { keepDaily: 1_000 }, { keepWithin: '100y' }])(
    'keeps everything when the policy covers everything (%j)',
    (policy) => {
      const result = plan(candidates(DAILY_TO_MAY_2026), policy);
      expect(result.remove).toEqual([]);
      expect(result.keep).toEqual(DAILY_TO_MAY_2026.map(([id]) => id).reverse());
    },
  );

  it('treats an id such as __proto__ as any other', () => {
    const result = plan(
      candidates([
        ['__proto__', '2026-01-02T00:00:00Z'],
        ['constructor', '2026-01-01T00:00:00Z'],
      ]),
      { keepLast: 1 },
    );
    expect(result.keep).toEqual(['__proto__']);
    expect(Object.keys(result.reasons)).toEqual(['__proto__']);
    expect(Object.hasOwn(result.reasons, 'constructor')).toBe(false);
  });
});

describe('refused input', () => {
  const one = candidates([['a', '2026-01-01T00:00:00Z']]);

  it.each<[string, RetentionPolicy]>([
    ['an empty policy', {}],
    ['a count of 0', { keepDaily: 0 }],
    ['a fractional count', { keepLast: 1.5 }],
    ['a malformed duration', { keepWithin: '1x' }],
    ['a duration without a number', { keepWithin: 'd' }],
  ])('refuses %s', (_name, policy) => {
    expect(() => planRetention(one, policy)).toThrow(RangeError);
  });

  it('refuses an id listed twice', () => {
    const twice = candidates([
      ['a', '2026-01-01T00:00:00Z'],
      ['a', '2026-01-02T00:00:00Z'],
    ]);
    expect(() => planRetention(twice, { keepLast: 1 })).toThrow(/listed twice/);
  });

  it('refuses an invalid date', () => {
    expect(() => planRetention([{ id: 'a', createdAt: new Date('nope') }], { keepLast: 1 })).toThrow(/invalid date/);
  });
});
