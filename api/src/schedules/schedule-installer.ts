import { Queue, type ConnectionOptions, type JobSchedulerJson, type JobSchedulerTemplateOptions } from 'bullmq';
import type { CofferConfig } from '@coffer/shared';
import type { CronSchedule } from './cron-rules.js';

/** The queue of schedule ticks: one BullMQ job scheduler per schedule, one tick job per slot. */
export const SCHEDULE_QUEUE = 'schedules';
export const TICK_JOB = 'tick';

/**
 * What a tick carries: the schedule it is for, and the cron and timezone its scheduler was
 * installed with, so a tick of a scheduler installed before the schedule changed is known as such.
 */
export interface TickData extends CronSchedule {
  schedule: string;
}

// Names are strings: BullMQ types a scheduler's id as a job name.
export type ScheduleQueue = Queue<TickData, void, string>;

/** A schedule as Redis needs it. */
export interface InstalledSchedule extends CronSchedule {
  name: string;
}

// A tick that fails (MySQL or Redis away) is tried again for about two minutes (1 + 2 + … + 64 s):
// long enough for a restart, short of the next slot of most schedules. One that never gets
// through leaves its slot without a run. Done ticks leave Redis at once.
const TICK_OPTIONS: JobSchedulerTemplateOptions = {
  attempts: 8,
  backoff: { type: 'exponential', delay: 1000 },
  removeOnComplete: true,
  removeOnFail: { age: 7 * 86_400, count: 1000 },
};

export function createScheduleQueue(
  config: Pick<CofferConfig, 'queuePrefix'>,
  connection: ConnectionOptions,
): ScheduleQueue {
  return new Queue<TickData, void, string>(SCHEDULE_QUEUE, { connection, prefix: config.queuePrefix });
}

function tickData(schedule: InstalledSchedule): TickData {
  return { schedule: schedule.name, cron: schedule.cron, timezone: schedule.timezone };
}

/** Installs schedules in Redis as BullMQ job schedulers, and removes them. */
export function createScheduleInstaller(queue: ScheduleQueue) {
  /** Creates or replaces the schedule's scheduler; its pending tick becomes the next slot from now. */
  async function install(schedule: InstalledSchedule): Promise<void> {
    await queue.upsertJobScheduler(
      schedule.name,
      { pattern: schedule.cron, tz: schedule.timezone },
      { name: TICK_JOB, data: tickData(schedule), opts: TICK_OPTIONS },
    );
  }

  async function uninstall(name: string): Promise<void> {
    await queue.removeJobScheduler(name);
  }

  /** Whether Redis holds the scheduler exactly as `schedule` wants it, with its tick pending. */
  async function isInstalled(
    schedule: InstalledSchedule,
    scheduler: JobSchedulerJson<TickData> | undefined,
  ): Promise<boolean> {
    if (!scheduler || scheduler.pattern !== schedule.cron || scheduler.tz !== schedule.timezone) return false;
    const data = scheduler.template?.data;
    const wanted = tickData(schedule);
    if (!data || data.schedule !== wanted.schedule || data.cron !== wanted.cron || data.timezone !== wanted.timezone) {
      return false;
    }
    return (
      scheduler.next !== undefined && (await queue.getJob(`repeat:${schedule.name}:${scheduler.next}`)) !== undefined
    );
  }

  return {
    install,
    uninstall,

    /**
     * Makes Redis hold exactly one scheduler per stored schedule. A scheduler already right is
     * left alone, so a tick that is due (its slot passed while no API ran) still runs, once.
     * Redis is read before MySQL: a scheduler found in Redis whose schedule MySQL then lacks
     * was deleted, never one being created (its row is written before its scheduler).
     */
    async reconcile(stored: () => Promise<InstalledSchedule[]>): Promise<{ installed: number; removed: number }> {
      const schedulers = await queue.getJobSchedulers(0, -1);
      const schedules = await stored();
      const byName = new Map(schedulers.map((scheduler) => [scheduler.key, scheduler]));
      const wanted = new Set(schedules.map((schedule) => schedule.name));
      let installed = 0;
      let removed = 0;
      for (const schedule of schedules) {
        if (await isInstalled(schedule, byName.get(schedule.name))) continue;
        await install(schedule);
        installed += 1;
      }
      for (const scheduler of schedulers) {
        if (wanted.has(scheduler.key)) continue;
        await uninstall(scheduler.key);
        removed += 1;
      }
      return { installed, removed };
    },
  };
}

export type ScheduleInstaller = ReturnType<typeof createScheduleInstaller>;
