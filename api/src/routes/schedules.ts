import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { CofferConfig } from '@coffer/shared';
import { ANY_ROLE, SUBMITTERS, maySeeJob, seesAllJobs } from '../auth/roles.js';
import { ScheduleInvalid, ScheduleNameTaken, ScheduleNotFound } from '../errors.js';
import { backupRequestSchema, prepareBackup, type BackupRequest } from '../jobs/backup-request.js';
import { principalOf } from '../plugins/auth.js';
import { checkCron, nextRunAt, type CronSchedule } from '../schedules/cron-rules.js';
import { creatorRights } from '../schedules/schedule-dispatch.js';
import { createScheduleStore, type ScheduleRecord } from '../schedules/schedule-store.js';
import { errorResponses } from '../schemas.js';
import { unavailableOnFailure } from '../unavailable.js';

interface ScheduleBody {
  cron: string;
  /** Filled with UTC by the schema's default. */
  timezone: string;
  backup: BackupRequest;
}

// Letters, digits, `.`, `_`, `-`; not only dots, which no URL path can name.
const nameSchema = {
  type: 'string',
  pattern: '^(?!\\.+$)[A-Za-z0-9._-]{1,128}$',
  description: 'Letters, digits, `.`, `_` and `-`, at most 128',
} as const;

const scheduleFields = {
  cron: {
    type: 'string',
    minLength: 1,
    maxLength: 255,
    description:
      '5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, as cron-parser reads them ' +
      '(`*/15 * * * *`, `0 30 2 * * 1-5`); runs at least SCHEDULE_MIN_INTERVAL_SECONDS apart',
  },
  timezone: {
    type: 'string',
    minLength: 1,
    maxLength: 64,
    default: 'UTC',
    description: 'IANA timezone the cron is read in (`Europe/Paris`); default UTC',
  },
  backup: { ...backupRequestSchema, description: 'The backup each run queues, as the body of POST /backup' },
} as const;

const createBody = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'cron', 'backup'],
  properties: { name: nameSchema, ...scheduleFields },
} as const;

const replaceBody = {
  type: 'object',
  additionalProperties: false,
  required: ['cron', 'backup'],
  properties: scheduleFields,
} as const;

const nameParams = {
  type: 'object',
  required: ['name'],
  properties: { name: nameSchema },
} as const;

const nullableDate = { type: ['string', 'null'], format: 'date-time' } as const;

const scheduleView = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    cron: { type: 'string' },
    timezone: { type: 'string' },
    backup: { ...backupRequestSchema, description: 'The backup each run queues' },
    actor: { type: 'string', description: 'The token that created the schedule; each run has its rights' },
    createdAt: { type: 'string', format: 'date-time' },
    updatedAt: { type: 'string', format: 'date-time' },
    nextRunAt: { ...nullableDate, description: 'The next slot by the cron (null if there is none)' },
    lastJobId: { type: ['string', 'null'], description: 'The job of the latest run (GET /jobs/{id})' },
    lastStatus: { type: ['string', 'null'], description: "That job's status, as the log has it" },
  },
  required: [
    'name',
    'cron',
    'timezone',
    'backup',
    'actor',
    'createdAt',
    'updatedAt',
    'nextRunAt',
    'lastJobId',
    'lastStatus',
  ],
} as const;

function viewOf(schedule: ScheduleRecord, now = new Date()) {
  return {
    name: schedule.name,
    cron: schedule.cron,
    timezone: schedule.timezone,
    backup: schedule.backup,
    actor: schedule.actor,
    createdAt: schedule.createdAt.toISOString(),
    updatedAt: schedule.updatedAt.toISOString(),
    nextRunAt: nextRunAt(schedule, now)?.toISOString() ?? null,
    lastJobId: schedule.lastJobId,
    lastStatus: schedule.lastStatus,
  };
}

const RUNS =
  'Each run is an ordinary backup job (its view and log rows name the schedule) with the rights of the token ' +
  'that created the schedule; a run is refused with a `rejected` log row once that token is revoked, and a slot ' +
  'that comes while the previous run is unfinished is skipped (a `rejected` row with SCHEDULE_BUSY).';

const scheduleRoutes: FastifyPluginAsync<{ config: CofferConfig }> = async (app, { config }) => {
  const store = unavailableOnFailure(createScheduleStore(app.mysql));

  function checked(cron: string, timezone: string): CronSchedule {
    const outcome = checkCron(cron, timezone, config.scheduleMinIntervalSeconds);
    if ('problem' in outcome) throw new ScheduleInvalid(outcome.problem);
    return outcome.schedule;
  }

  /** The schedule if the caller may see it: an operator sees only its own, others' are as unknown. */
  async function visible(request: FastifyRequest, name: string): Promise<ScheduleRecord> {
    const schedule = await store.get(name);
    if (!schedule || !maySeeJob(principalOf(request), schedule.actor)) throw new ScheduleNotFound(name);
    return schedule;
  }

  /** The stored schedule after a write (gone only if deleted at once by someone else). */
  async function reread(name: string): Promise<ScheduleRecord> {
    const schedule = await store.get(name);
    if (!schedule) throw new ScheduleNotFound(name);
    return schedule;
  }

  // The runner plugin is registered after the routes; it is there before any request.
  const runner = () => app.scheduleRunner;

  app.post<{ Body: ScheduleBody & { name: string } }>(
    '/schedules',
    {
      config: { access: SUBMITTERS },
      schema: {
        operationId: 'createSchedule',
        summary: 'Create a schedule: a backup queued at every slot of a cron',
        description:
          `${RUNS} The backup is checked as POST /backup checks it, with the same codes (its destination is ` +
          'claimed for the token, as a backup would). A bad cron or timezone, or runs closer than ' +
          'SCHEDULE_MIN_INTERVAL_SECONDS, is 400 INVALID_SCHEDULE; a taken name 409 SCHEDULE_NAME_TAKEN.',
        tags: ['policies'],
        body: createBody,
        response: {
          201: { description: 'Created; Location: /schedules/{name}', ...scheduleView },
          ...errorResponses(400, 401, 403, 409, 413, 415, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const { name, cron, timezone, backup } = request.body;
      const schedule = checked(cron, timezone);
      // Before the backup is checked, so a taken name claims no destination.
      if (await store.get(name)) throw new ScheduleNameTaken(name);
      await prepareBackup(app, config, principal, backup);
      if (!(await store.insert({ name, ...schedule, backup, actor: principal.name }))) {
        throw new ScheduleNameTaken(name);
      }
      await runner().install({ name, ...schedule });
      request.log.info({ schedule: name, cron: schedule.cron, timezone: schedule.timezone }, 'schedule created');
      return reply
        .code(201)
        .header('location', `/schedules/${name}`)
        .send(viewOf(await reread(name)));
    },
  );

  app.get(
    '/schedules',
    {
      config: { access: ANY_ROLE },
      schema: {
        operationId: 'listSchedules',
        summary: 'Schedules, by name',
        description: 'An operator sees only the schedules it created.',
        tags: ['policies'],
        response: {
          200: {
            type: 'object',
            properties: { items: { type: 'array', items: scheduleView } },
            required: ['items'],
          },
          ...errorResponses(401, 403, 429, 503),
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const schedules = await store.list(seesAllJobs(principal) ? undefined : principal.name);
      const now = new Date();
      return { items: schedules.map((schedule) => viewOf(schedule, now)) };
    },
  );

  app.get<{ Params: { name: string } }>(
    '/schedules/:name',
    {
      config: { access: ANY_ROLE },
      schema: {
        operationId: 'getSchedule',
        summary: 'One schedule: its cron, backup, next slot and latest run',
        description: "An operator sees only the schedules it created; others' are 404, as if unknown.",
        tags: ['policies'],
        params: nameParams,
        response: { 200: scheduleView, ...errorResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request) => viewOf(await visible(request, request.params.name)),
  );

  app.put<{ Params: { name: string }; Body: ScheduleBody }>(
    '/schedules/:name',
    {
      config: { access: SUBMITTERS },
      schema: {
        operationId: 'replaceSchedule',
        summary: "Replace a schedule's cron, timezone and backup",
        description:
          'The token that created the schedule stays its actor: the new backup is checked with its rights (400 ' +
          'INVALID_SCHEDULE once that token is revoked). An operator changes only the schedules it created; ' +
          "others' are 404. The next run is at the next slot of the new cron.",
        tags: ['policies'],
        params: nameParams,
        body: replaceBody,
        response: { 200: scheduleView, ...errorResponses(400, 401, 403, 404, 413, 415, 429, 503) },
      },
    },
    async (request) => {
      const { name } = request.params;
      const existing = await visible(request, name);
      const schedule = checked(request.body.cron, request.body.timezone);
      const rights = creatorRights(await app.tokenStore.byName(existing.actor), existing.actor);
      if ('reason' in rights) {
        throw new ScheduleInvalid(`schedule "${name}" cannot change: ${rights.reason}; delete it and create it again`);
      }
      await prepareBackup(app, config, rights.principal, request.body.backup);
      if (!(await store.replace(name, { ...schedule, backup: request.body.backup }))) throw new ScheduleNotFound(name);
      await runner().install({ name, ...schedule });
      request.log.info({ schedule: name, cron: schedule.cron, timezone: schedule.timezone }, 'schedule replaced');
      return viewOf(await reread(name));
    },
  );

  app.delete<{ Params: { name: string } }>(
    '/schedules/:name',
    {
      config: { access: SUBMITTERS },
      schema: {
        operationId: 'deleteSchedule',
        summary: 'Delete a schedule',
        description:
          'No further runs are queued; a run already queued or running goes on. An operator deletes only the ' +
          "schedules it created; others' are 404.",
        tags: ['policies'],
        params: nameParams,
        response: {
          204: { description: 'Deleted', type: 'null' },
          ...errorResponses(400, 401, 403, 404, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const { name } = request.params;
      await visible(request, name);
      if (!(await store.remove(name))) throw new ScheduleNotFound(name);
      await runner().uninstall(name);
      request.log.info({ schedule: name }, 'schedule deleted');
      return reply.code(204).send();
    },
  );
};

export default scheduleRoutes;
