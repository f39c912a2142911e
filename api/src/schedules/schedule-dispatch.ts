import type { FastifyBaseLogger } from 'fastify';
import { isTerminal, type BackupJobData, type LogEntry } from '@coffer/shared';
import { SUBMITTERS, type Principal } from '../auth/roles.js';
import type { TokenRecord } from '../auth/token-repository.js';
import type { BackupRequest } from '../jobs/backup-request.js';
import type { Submission, Submitted } from '../jobs/submit-job.js';
import type { ScheduleInstaller, TickData } from './schedule-installer.js';
import type { RecordRun, ScheduleRecord } from './schedule-store.js';

/** One slot of a schedule, as its tick job brings it. */
export interface Tick {
  /** When the slot was due (the tick may run later). */
  slot: Date;
  data: TickData;
}

export type DispatchOutcome =
  | { outcome: 'queued'; jobId: string }
  | { outcome: 'refused'; code: string }
  /** The schedule is gone: its scheduler was removed. */
  | { outcome: 'removed' }
  /** The tick came from a scheduler installed before the schedule changed: it was installed again. */
  | { outcome: 'outdated' };

/** The code of a run refused because the token that created its schedule is revoked (or gone). */
export const TOKEN_REVOKED = 'SCHEDULE_TOKEN_REVOKED';
/** The code of a slot skipped because the schedule's previous run has not finished. */
export const SCHEDULE_BUSY = 'SCHEDULE_BUSY';

/** The rights a schedule's runs have: its creator's, while the token may still back up. */
export function creatorRights(
  token: TokenRecord | null,
  actor: string,
): { principal: Principal } | { code: string; reason: string } {
  if (!token) return { code: TOKEN_REVOKED, reason: `token "${actor}" that created the schedule no longer exists` };
  if (token.revokedAt) return { code: TOKEN_REVOKED, reason: `token "${actor}" that created the schedule is revoked` };
  if (!SUBMITTERS.includes(token.role)) {
    return {
      code: 'FORBIDDEN',
      reason: `token "${actor}" that created the schedule is a ${token.role} and may not back up`,
    };
  }
  return { principal: { id: token.id, name: token.name, role: token.role, sourceRoots: token.sourceRoots } };
}

/** A route error that refuses the request (4xx, with a code), as opposed to a failure to try again. */
function refusal(err: unknown): { code: string; message: string } | null {
  if (!(err instanceof Error)) return null;
  const { statusCode, code } = err as { statusCode?: unknown; code?: unknown };
  return typeof statusCode === 'number' && statusCode < 500 && typeof code === 'string'
    ? { code, message: err.message }
    : null;
}

export interface DispatchDeps {
  /** Written as `worker` on the rows a refused run leaves. */
  instanceName: string;
  /** Holds the schedule's row lock while a run is decided (see `lockSchedule`). */
  lock<T>(name: string, work: (schedule: ScheduleRecord | null, recordRun: RecordRun) => Promise<T>): Promise<T>;
  /** A job's status in the log (job_status), null when the log has none. */
  jobStatus(jobId: string): Promise<string | null>;
  /** A job's BullMQ state (`unknown` when Redis does not hold it). */
  queueState(jobId: string): Promise<string>;
  tokenByName(name: string): Promise<TokenRecord | null>;
  /** `prepareBackup` with the app and configuration bound. */
  prepare(principal: Principal, request: BackupRequest): Promise<BackupJobData>;
  submit(submission: Submission): Promise<Submitted>;
  append(entry: LogEntry): Promise<void>;
  installer: Pick<ScheduleInstaller, 'install' | 'uninstall'>;
  logger: FastifyBaseLogger;
}

/**
 * Turns a schedule's tick into an ordinary backup job, with the rights of the token that
 * created the schedule, and at most one run of a schedule queued or running: a slot that comes
 * while the previous run is unfinished is skipped (a `rejected` row with SCHEDULE_BUSY), never
 * stacked. A refused run leaves one `rejected` row and queues nothing. Failures to reach MySQL
 * or Redis throw, so BullMQ tries the tick again; the Idempotency-Key made from the slot keeps a
 * tick tried again from queueing a second job.
 */
export function createScheduleDispatcher(deps: DispatchDeps) {
  /** The status of the schedule's last run while it can still finish; null once it cannot. */
  async function unfinished(jobId: string): Promise<string | null> {
    const status = await deps.jobStatus(jobId);
    if (status !== null && isTerminal(status)) return null;
    const state = await deps.queueState(jobId);
    // Not in Redis (a Redis restarted empty lost it) or finished there while its row is on its
    // way: either way it holds up no run.
    if (state === 'unknown' || state === 'completed' || state === 'failed') return null;
    return status ?? 'queued';
  }

  async function refuse(schedule: ScheduleRecord, code: string, message: string): Promise<DispatchOutcome> {
    await deps.append({
      action: 'backup',
      parameter: schedule.backup.source.slice(0, 4096),
      status: 'rejected',
      jobId: null,
      attempt: null,
      worker: deps.instanceName,
      code,
      message: message.slice(0, 2000),
      destination: schedule.backup.destination ?? null,
      actor: schedule.actor,
      schedule: schedule.name,
    });
    deps.logger.info({ schedule: schedule.name, code }, message);
    return { outcome: 'refused', code };
  }

  return async function dispatch({ slot, data }: Tick): Promise<DispatchOutcome> {
    const name = data.schedule;
    return deps.lock(name, async (schedule, recordRun) => {
      if (!schedule) {
        await deps.installer.uninstall(name);
        deps.logger.info({ schedule: name }, 'removed the scheduler of a deleted schedule');
        return { outcome: 'removed' };
      }
      if (schedule.cron !== data.cron || schedule.timezone !== data.timezone) {
        await deps.installer.install(schedule);
        deps.logger.info({ schedule: name }, 'a tick of an outdated scheduler: installed the schedule again');
        return { outcome: 'outdated' };
      }
      const due = `schedule "${name}": the run due at ${slot.toISOString()}`;
      const rights = creatorRights(await deps.tokenByName(schedule.actor), schedule.actor);
      if ('reason' in rights) return refuse(schedule, rights.code, `${due} was refused: ${rights.reason}`);
      if (schedule.lastJobId !== null) {
        const running = await unfinished(schedule.lastJobId);
        if (running !== null) {
          return refuse(
            schedule,
            SCHEDULE_BUSY,
            `${due} was skipped: its previous run ${schedule.lastJobId} is still ${running}`,
          );
        }
      }
      try {
        const prepared = await deps.prepare(rights.principal, schedule.backup);
        const { id } = await deps.submit({
          item: { name: 'backup', data: { ...prepared, schedule: name } },
          actor: rights.principal.name,
          idempotencyKey: `schedule:${name}:${slot.getTime()}`,
        });
        await recordRun(id);
        return { outcome: 'queued', jobId: id };
      } catch (err) {
        const refused = refusal(err);
        if (!refused) throw err;
        return refuse(schedule, refused.code, `${due} was refused: ${refused.message}`);
      }
    });
  };
}

export type ScheduleDispatcher = ReturnType<typeof createScheduleDispatcher>;
