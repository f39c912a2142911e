import cronParser from 'cron-parser';
import { describe, expect, it } from 'vitest';
import { checkCron, nextRunAt } from '../src/schedules/cron-rules.js';

// A schedule's cron is refused exactly when two of its runs, as BullMQ will compute them
// (cron-parser 4.9.0), come closer than SCHEDULE_MIN_INTERVAL_SECONDS.

const FROM = new Date('2027-01-01T00:00:00Z');

/** The closest two of the next `count` runs, in seconds, by stepping through them one by one. */
function closestRuns(cron: string, count: number): number {
  const runs = cronParser.parseExpression(cron, { tz: 'UTC', currentDate: FROM });
  let previous = runs.next().getTime();
  let closest = Infinity;
  for (let i = 1; i < count; i++) {
    const run = runs.next().getTime();
    closest = Math.min(closest, (run - previous) / 1000);
    previous = run;
  }
  return closest;
}

const accepted = (cron: string, minimum: number) => 'schedule' in checkCron(cron, 'UTC', minimum, FROM);

describe('the minimum interval', () => {
  it.each([
    ['every 2 seconds', '*/2 * * * * *', 200],
    ['every minute', '* * * * *', 100],
    ['two minutes in every hour', '0,1 * * * *', 100],
    ['at 00:59 and 23:59', '59 23,0 * * *', 100],
    ['late and early on the 1st only', '0,59 0,23 1 * *', 40],
    ['weekdays at noon', '0 12 * * 1-5', 40],
    ['the 1st and the 31st', '0 0 1,31 * *', 40],
    ['the 13th and every Friday', '0 0 13 * 5', 80],
    ['the last day of the month', '0 0 L * *', 30],
    ['the last Friday of the month', '0 0 * * 5L', 30],
    ['the first Monday of the month', '0 0 * * 1#1', 30],
  ])('%s: accepted up to the closest two runs, refused above', (_case, cron, count) => {
    const closest = closestRuns(cron, count);

    expect(accepted(cron, closest)).toBe(true);
    expect(accepted(cron, closest + 1)).toBe(false);
  });

  it('says how close the runs come and what the minimum is', () => {
    expect(checkCron('0,10 * * * * *', 'UTC', 60, FROM)).toEqual({
      problem:
        'cron "0,10 * * * * *" runs as little as 10 s apart; ' +
        'runs of a schedule must be at least 1 min apart (SCHEDULE_MIN_INTERVAL_SECONDS)',
    });
  });

  it('accepts every minute at the default minimum (60 s), and once a leap year', () => {
    expect(accepted('* * * * *', 60)).toBe(true);
    expect(accepted('0 0 29 2 *', 31_622_400)).toBe(true);
  });
});

describe('the cron as stored and run', () => {
  it('keeps the fields, separated by single spaces', () => {
    expect(checkCron(' 0  2 * *   1-5 ', 'Europe/Paris', 60, FROM)).toEqual({
      schedule: { cron: '0 2 * * 1-5', timezone: 'Europe/Paris' },
    });
  });

  it('finds the next run in the timezone', () => {
    expect(nextRunAt({ cron: '30 2 * * *', timezone: 'UTC' }, FROM)?.toISOString()).toBe('2027-01-01T02:30:00.000Z');
    expect(nextRunAt({ cron: '30 2 * * *', timezone: 'Asia/Tokyo' }, FROM)?.toISOString()).toBe(
      '2027-01-01T17:30:00.000Z',
    );
    expect(nextRunAt({ cron: '0 0 12 * * *', timezone: 'America/New_York' }, FROM)?.toISOString()).toBe(
      '2027-01-01T17:00:00.000Z',
    );
  });
});
