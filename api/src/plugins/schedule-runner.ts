import { Worker, type Job } from 'bullmq';
import fp from 'fastify-plugin';
import { createRedis, settlesWithin, type CofferConfig, type RedisClient } from '@coffer/shared';
import { prepareBackup } from '../jobs/backup-request.js';
import { createScheduleDispatcher } from '../schedules/schedule-dispatch.js';
import {
  SCHEDULE_QUEUE,
  createScheduleInstaller,
  createScheduleQueue,
  type InstalledSchedule,
  type TickData,
} from '../schedules/schedule-installer.js';
import { createScheduleStore, lockSchedule } from '../schedules/schedule-store.js';

/** What the schedule routes ask of the runner once MySQL has a schedule's new state. */
export interface ScheduleRunner {
  /** Installs (or replaces) the schedule's scheduler in Redis; if Redis does not take it, later. */
  install(schedule: InstalledSchedule): Promise<void>;
  /** Removes the schedule's scheduler from Redis; if Redis does not answer, later. */
  uninstall(name: string): Promise<void>;
}

declare module 'fastify' {
  interface FastifyInstance {
    scheduleRunner: ScheduleRunner;
  }
}

/**
 * How often Redis is brought in line with MySQL while connected: a Redis flushed without
 * dropping the connection (FLUSHALL, a failover to an empty replica) is noticed within this.
 */
const RECONCILE_MS = 60_000;
/** How long after a failed re-installation the next try comes. */
const RETRY_MS = 5000;
/** How long start-up waits for the schedules to be installed, and closing for a tick being turned into a job. */
const WAIT_MS = 5000;
/** How long a route waits for Redis to take a schedule before leaving it to the next reinstallation. */
const ROUTE_WAIT_MS = 2000;

/**
 * Schedules in Redis, and their runs. MySQL holds the schedules; Redis holds one BullMQ job
 * scheduler per schedule on the `schedules` queue, which yields a tick job per slot. Every API
 * process runs a worker on that queue (BullMQ hands each tick to one of them) that turns the
 * tick into a backup job (schedule-dispatch.ts). The schedulers are installed from MySQL when
 * the API is ready, whenever its Redis connection comes back and every RECONCILE_MS, so a
 * Redis that lost its data (restarted without persistence, flushed) gets them back.
 */
export default fp<{ config: CofferConfig }>(
  async (app, { config }) => {
    // The producer connection: fails fast while Redis is away (and a route waits at most ROUTE_WAIT_MS).
    const queue = createScheduleQueue(config, app.redis);
    queue.on('error', (err: Error) => app.log.warn({ err: err.message }, 'schedule queue error'));
    const installer = createScheduleInstaller(queue);
    const store = createScheduleStore(app.mysql);
    const dispatch = createScheduleDispatcher({
      instanceName: config.instanceName,
      lock: (name, work) => lockSchedule(app.mysql, name, work),
      jobStatus: (jobId) => store.jobStatus(jobId),
      queueState: (jobId) => app.backupQueue.getJobState(jobId),
      tokenByName: (name) => app.tokenStore.byName(name),
      prepare: (principal, request) => prepareBackup(app, config, principal, request),
      submit: (submission) => app.submitJob(submission),
      append: (entry) => app.logStore.append(entry),
      installer,
      logger: app.log.child({ component: 'schedules' }),
    });

    let closing = false;
    let retry: NodeJS.Timeout | undefined;
    let reconciling: NodeJS.Timeout | undefined;
    let running: Promise<void> | null = null;

    function retryLater(): void {
      clearTimeout(retry);
      if (!closing) retry = setTimeout(() => void reinstall(), RETRY_MS).unref();
    }

    /** Brings Redis in line with MySQL; on failure, tries again in a while until it succeeds. */
    function reinstall(): Promise<void> {
      if (closing) return Promise.resolve();
      clearTimeout(retry);
      // One at a time: a request while one runs is served by running again after it.
      const next = (running ?? Promise.resolve()).then(async () => {
        try {
          const { installed, removed } = await installer.reconcile(() => store.list());
          if (installed > 0 || removed > 0) app.log.info({ installed, removed }, 'schedules installed in Redis');
        } catch (err) {
          app.log.warn({ err }, `cannot install the schedules in Redis; trying again in ${RETRY_MS / 1000} s`);
          retryLater();
        }
      });
      running = next;
      return next;
    }

    /** Does `work` in Redis, or leaves it to the next reinstallation; answers within ROUTE_WAIT_MS either way. */
    async function orLater(work: () => Promise<void>, what: string): Promise<void> {
      const attempt = work();
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        // A Redis away since start-up holds BullMQ's commands until it answers: a route does not wait for it.
        timer = setTimeout(() => reject(new Error(`Redis did not answer within ${ROUTE_WAIT_MS} ms`)), ROUTE_WAIT_MS);
      });
      try {
        await Promise.race([attempt, late]);
      } catch (err) {
        attempt.catch(() => undefined);
        app.log.warn({ err }, `cannot ${what} in Redis now; the schedules will be installed again from MySQL`);
        retryLater();
      } finally {
        clearTimeout(timer);
      }
    }

    app.decorate<ScheduleRunner>('scheduleRunner', {
      install: (schedule) => orLater(() => installer.install(schedule), `install schedule "${schedule.name}"`),
      uninstall: (name) => orLater(() => installer.uninstall(name), `remove schedule "${name}"`),
    });

    let worker: Worker<TickData, void, string> | undefined;
    let connection: RedisClient | undefined;

    /** Starts this process's tick worker, once Redis answers. */
    function startWorker(): void {
      if (worker || closing) return;
      connection = createRedis(config.redis, 'worker');
      connection.on('error', (err: Error) => app.log.debug({ err: err.message }, 'schedule worker redis error'));
      worker = new Worker<TickData, void, string>(
        SCHEDULE_QUEUE,
        async (job: Job<TickData, void, string>) => {
          const slot = new Date(job.opts.prevMillis ?? job.timestamp);
          const outcome = await dispatch({ slot, data: job.data });
          app.log.info({ schedule: job.data.schedule, slot: slot.toISOString(), ...outcome }, 'schedule tick');
        },
        // One tick at a time per process: ticks are quick, and runs of one schedule are serialised anyway.
        { connection, prefix: config.queuePrefix, concurrency: 1 },
      );
      worker.on('error', (err: Error) => app.log.warn({ err: err.message }, 'schedule worker error'));
      worker.on('failed', (job, err) => {
        if (job && job.attemptsMade >= (job.opts.attempts ?? 1)) {
          app.log.error({ err, schedule: job.data.schedule }, 'a schedule tick failed for good: its slot has no run');
        }
      });
    }

    // A Redis that comes back may have lost everything (nothing is kept on disk in some setups).
    const onRedisReady = () => {
      app.log.info('redis connection ready: installing the schedules');
      startWorker();
      void reinstall();
    };

    app.addHook('onReady', async () => {
      app.redis.on('ready', onRedisReady);
      reconciling = setInterval(() => {
        if (app.redis.status === 'ready') void reinstall();
      }, RECONCILE_MS).unref();
      // An API that starts while Redis is away starts all the same: it installs them once Redis answers.
      if (app.redis.status !== 'ready') return;
      await settlesWithin(reinstall(), WAIT_MS);
      startWorker();
    });

    app.addHook('onClose', async () => {
      closing = true;
      clearTimeout(retry);
      clearInterval(reconciling);
      app.redis.off('ready', onRedisReady);
      if (worker) {
        // BullMQ 5.81 closing a worker whose first connection is still being made lets that
        // attempt fail later with nobody listening (an unhandled rejection). The worker starts
        // only once Redis answers, so this wait is short.
        await settlesWithin(worker.waitUntilReady(), WAIT_MS);
        await settlesWithin(worker.close(), WAIT_MS);
      }
      await settlesWithin(running ?? Promise.resolve(), WAIT_MS);
      await settlesWithin(queue.close(), WAIT_MS);
      connection?.disconnect();
    });
  },
  {
    name: 'schedule-runner',
    dependencies: ['mysql', 'queue', 'log-store', 'token-store', 'destination-store', 'job-submitter'],
  },
);
