import cronParser, { type CronFields } from 'cron-parser';

/**
 * What a schedule's cron may be, and when it runs. Parsing is cron-parser 4.9.0's, the version
 * BullMQ computes the runs with, so a cron accepted here runs as it was checked.
 */

/** The fields of a six-field cron, seconds first; a five-field cron has all but `second`. */
const FIELDS = [
  { name: 'second', allowed: '0-59', probeDefault: '0' },
  { name: 'minute', allowed: '0-59', probeDefault: '*' },
  { name: 'hour', allowed: '0-23', probeDefault: '*' },
  { name: 'day-of-month', allowed: '1-31 or L', probeDefault: '*' },
  { name: 'month', allowed: '1-12 or jan-dec', probeDefault: '*' },
  { name: 'day-of-week', allowed: '0-7 (0 and 7 are Sunday) or sun-sat, with L and #', probeDefault: '*' },
] as const;

const DAY_SECONDS = 86_400;
/** How far ahead the calendar is searched for the days a cron runs on. */
const CALENDAR_YEARS = 8;
// cron-parser's own table: February has 29 days, which decides whether day-of-month is "every day".
const PARSER_DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** A cron and timezone as checked: the cron with its fields separated by single spaces. */
export interface CronSchedule {
  cron: string;
  timezone: string;
}

function parserMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Whether `timezone` is an IANA zone the runtime knows (as luxon, which cron-parser uses, decides). */
export function isTimezone(timezone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: timezone });
    return true;
  } catch {
    return false;
  }
}

/** The first field of `fields` (six, seconds first) cron-parser refuses on its own, as words. */
function badField(fields: readonly string[]): string | null {
  for (const [index, field] of FIELDS.entries()) {
    const value = fields[index] ?? '';
    // Every other field at its widest, so only this one can be at fault.
    const probe = FIELDS.map((other, i) => (i === index ? value : other.probeDefault)).join(' ');
    try {
      cronParser.parseExpression(probe, { tz: 'UTC' });
    } catch (err) {
      const detail = parserMessage(err);
      const range = /got (value|range)/.test(detail) ? '' : ` (${detail})`;
      return `cron field "${field.name}" has "${value}": allowed ${field.allowed}${range}`;
    }
  }
  return null;
}

/** The seconds of the day a cron runs at, ascending. */
function timesOfDay(fields: CronFields): number[] {
  const times: number[] = [];
  for (const hour of fields.hour) {
    for (const minute of fields.minute) {
      for (const second of fields.second) times.push(hour * 3600 + minute * 60 + second);
    }
  }
  return times;
}

function hasLast(sequence: readonly (number | string)[]): boolean {
  return sequence.some((item) => typeof item === 'string' && item.includes('L'));
}

/** cron-parser's `isNthDayMatch`: whether the `date`th is the `nth` of its weekday in the month. */
function isNthWeekday(date: number, nth: number): boolean {
  if (nth >= 6) return false;
  if (date < 8 && nth === 1) return true;
  const offset = date % 7 ? 1 : 0;
  return Math.floor((date - (date % 7)) / 7) + offset === nth;
}

/**
 * Whether the cron runs on a calendar day, decided as cron-parser decides it (`_findSchedule`):
 * day-of-month or day-of-week when both are restricted, `L` for last days, `#` for the nth weekday.
 */
function runsOn(fields: CronFields, nthDayOfWeek: number, day: Date): boolean {
  const date = day.getUTCDate();
  const month = day.getUTCMonth();
  const weekday = day.getUTCDay();
  const daysInMonth = new Date(Date.UTC(day.getUTCFullYear(), month + 1, 0)).getUTCDate();
  const dayOfMonth: readonly (number | string)[] = fields.dayOfMonth;
  const dayOfWeek: readonly (number | string)[] = fields.dayOfWeek;
  const monthDayMatch = dayOfMonth.includes(date) || (hasLast(dayOfMonth) && date === daysInMonth);
  const weekDayMatch =
    dayOfWeek.includes(weekday) ||
    (date + 7 > daysInMonth &&
      dayOfWeek.some(
        (item) => typeof item === 'string' && item.includes('L') && Number.parseInt(item[0] ?? '', 10) % 7 === weekday,
      ));
  const everyMonthDay = dayOfMonth.length >= (PARSER_DAYS_IN_MONTH[month] ?? 31);
  const everyWeekDay = dayOfWeek.length === 8;
  if (!monthDayMatch && (!weekDayMatch || everyWeekDay)) return false;
  if (!everyMonthDay && everyWeekDay && !monthDayMatch) return false;
  if (everyMonthDay && !everyWeekDay && !weekDayMatch) return false;
  if (nthDayOfWeek > 0 && !isNthWeekday(date, nthDayOfWeek)) return false;
  return (fields.month as readonly number[]).includes(month + 1);
}

/** The fewest days between two consecutive days the cron runs on (null: fewer than two), and whether it runs at all. */
function closestDays(fields: CronFields, nthDayOfWeek: number, from: Date): { days: number | null; runs: boolean } {
  let previous: number | null = null;
  let closest: number | null = null;
  const first = Date.UTC(from.getUTCFullYear(), from.getUTCMonth(), from.getUTCDate());
  for (let n = 0; n < CALENDAR_YEARS * 366 && closest !== 1; n++) {
    if (!runsOn(fields, nthDayOfWeek, new Date(first + n * DAY_SECONDS * 1000))) continue;
    if (previous !== null) closest = Math.min(closest ?? Infinity, n - previous);
    previous = n;
  }
  return { days: closest, runs: previous !== null };
}

/**
 * The shortest time between two runs, in seconds (Infinity when it runs at most once in the
 * years searched; null when never), measured on the schedule's wall clock: from the times of
 * day the cron names and the closest two days it runs on. Exhaustive where counting upcoming
 * runs is not (cron-parser takes about a millisecond a run), except that a spring-forward change
 * of the clock can bring the two runs around it closer, once a year; that is not counted.
 */
function shortestGap(fields: CronFields, nthDayOfWeek: number, from: Date): number | null {
  const { days, runs } = closestDays(fields, nthDayOfWeek, from);
  if (!runs) return null;
  const times = timesOfDay(fields);
  let gap = Infinity;
  for (let i = 1; i < times.length; i++) gap = Math.min(gap, (times[i] ?? 0) - (times[i - 1] ?? 0));
  if (days !== null) gap = Math.min(gap, days * DAY_SECONDS - (times[times.length - 1] ?? 0) + (times[0] ?? 0));
  return gap;
}

function duration(value: number): string {
  return value % 3600 === 0 && value >= 3600
    ? `${value / 3600} h`
    : value % 60 === 0 && value >= 60
      ? `${value / 60} min`
      : `${value} s`;
}

/**
 * Checks a schedule's cron and timezone: 5 fields, or 6 with seconds first; each field as
 * cron-parser reads it; an IANA timezone; and no two runs closer than `minIntervalSeconds`.
 * Returns the schedule as it will be stored (fields single-spaced), or the problem in words.
 */
export function checkCron(
  cron: string,
  timezone: string,
  minIntervalSeconds: number,
  now = new Date(),
): { schedule: CronSchedule } | { problem: string } {
  const fields = cron.trim().split(/\s+/);
  if (fields.length !== 5 && fields.length !== 6) {
    return {
      problem:
        `cron "${cron}" has ${fields.length} field${fields.length === 1 ? '' : 's'}: ` +
        'give 5 (minute hour day-of-month month day-of-week) or 6 (second first)',
    };
  }
  if (!isTimezone(timezone)) {
    return { problem: `timezone "${timezone}" is not an IANA timezone (such as UTC or Europe/Paris)` };
  }
  const six = fields.length === 6 ? fields : ['0', ...fields];
  const fieldProblem = badField(six);
  if (fieldProblem) return { problem: fieldProblem };
  const options: { tz: string; currentDate: Date; nthDayOfWeek?: number } = { tz: timezone, currentDate: now };
  let parsed: ReturnType<typeof cronParser.parseExpression>;
  try {
    parsed = cronParser.parseExpression(six.join(' '), options);
    // Some expressions parse and fail only when a run is looked for (a bare `L` day-of-week).
    parsed.next();
  } catch (err) {
    return { problem: `cron "${cron}" never runs (${parserMessage(err)})` };
  }
  const gap = shortestGap(parsed.fields, options.nthDayOfWeek ?? 0, now);
  if (gap === null) return { problem: `cron "${cron}" has no run in the next ${CALENDAR_YEARS} years` };
  if (gap < minIntervalSeconds) {
    return {
      problem:
        `cron "${cron}" runs as little as ${duration(gap)} apart; ` +
        `runs of a schedule must be at least ${duration(minIntervalSeconds)} apart (SCHEDULE_MIN_INTERVAL_SECONDS)`,
    };
  }
  return { schedule: { cron: fields.join(' '), timezone } };
}

/** The next run after `after`, as BullMQ will compute it; null when there is none. */
export function nextRunAt({ cron, timezone }: CronSchedule, after = new Date()): Date | null {
  try {
    return cronParser.parseExpression(cron, { tz: timezone, currentDate: after }).next().toDate();
  } catch {
    return null;
  }
}
