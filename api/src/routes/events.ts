import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { fastifySSE, type SSEMessage } from '@fastify/sse';
import { isTerminal, type LogRow } from '@coffer/shared';
import { ANY_ROLE, maySeeJob, seesAllJobs } from '../auth/roles.js';
import { JobNotFound } from '../errors.js';
import { createJobLookup } from '../jobs/job-lookup.js';
import { viewFromLog, type JobView } from '../jobs/job-view.js';
import { principalOf } from '../plugins/auth.js';
import { isTransition, type JobEvent } from '../plugins/job-events.js';
import { errorResponses, jobIdSchema } from '../schemas.js';

export interface EventRouteOptions {
  /** Milliseconds between heartbeat comments on an open stream. Default 15000. */
  heartbeatMs?: number;
}

/** A client this many status events behind (it does not read) is dropped; progress is only ever the latest. */
const MAX_PENDING_EVENTS = 100;
/** …or one whose socket holds this much unsent. */
const MAX_UNSENT_BYTES = 1024 * 1024;
/** At most this many log rows are replayed to a `/events` client that resumes. */
const MAX_REPLAY_ROWS = 1000;
const REPLAY_PAGE = 200;

const streamResponse = (what: string) => ({
  description: `A \`text/event-stream\`: ${what}`,
  content: { 'text/event-stream': { schema: { type: 'string' } } },
});

const RESUME_RULE =
  'Every `status` event has as `id` the id of the log row of its transition (as `GET /logs` shows it); ' +
  '`progress` events have none. A client reconnecting with `Last-Event-ID: N` gets every transition ' +
  'logged after row N as a `status` event before live events, so it misses none. Comments ' +
  '(`: heartbeat`) come every 15 s. A client that falls more than 100 events behind is dropped. ' +
  'An `Accept` header that refuses `text/event-stream` is answered 406.';

/**
 * Writes events to one client in order, one at a time (the SSE plugin waits for `drain`).
 * Progress is coalesced to the latest; a client too far behind is dropped rather than buffered.
 */
function eventSender(reply: FastifyReply) {
  const pending: SSEMessage[] = [];
  let progress: SSEMessage | null = null;
  let started = false;
  let pumping = false;
  let ending = false;
  let open = true;

  function close(): void {
    if (!open) return;
    open = false;
    pending.length = 0;
    progress = null;
    reply.sse.close();
  }

  function drop(): void {
    reply.log.warn('event stream client too far behind; dropped');
    close();
    // end() would wait for a client that does not read: let the socket go.
    reply.raw.destroy();
  }

  async function pump(): Promise<void> {
    if (pumping || !started) return;
    pumping = true;
    try {
      for (;;) {
        const next = pending.shift() ?? (ending ? null : progress);
        if (!next || !open) break;
        if (next === progress) progress = null;
        await reply.sse.send(next);
      }
      if (ending && pending.length === 0) close();
    } catch (err) {
      reply.log.info({ err }, 'event stream closed while writing');
      close();
    } finally {
      pumping = false;
    }
  }

  return {
    get open() {
      return open;
    },
    /** Begins writing (events pushed before wait until the first one is in). */
    start(): void {
      started = true;
      void pump();
    },
    push(message: SSEMessage): void {
      if (!open || ending) return;
      pending.push(message);
      if (pending.length > MAX_PENDING_EVENTS || reply.raw.writableLength > MAX_UNSENT_BYTES) return drop();
      void pump();
    },
    pushProgress(message: SSEMessage): void {
      if (!open || ending) return;
      progress = message;
      void pump();
    },
    /** Closes the stream once what is pending has been written. */
    end(): void {
      ending = true;
      void pump();
    },
    close,
  };
}

/** `Last-Event-ID` as a log row id; anything else is no resume point. */
function resumePoint(lastEventId: string | null): number | null {
  return lastEventId !== null && /^\d{1,15}$/.test(lastEventId) ? Number(lastEventId) : null;
}

/** The view as of `row`: the live one for the job's latest transition when it says so, else rebuilt from the log. */
function viewAt(history: readonly LogRow[], row: LogRow, live: JobView | null): JobView | null {
  const latest = history.filter(isTransition).at(-1);
  if (live && latest?.id === row.id && live.status === row.status) return live;
  return viewFromLog(history.filter((each) => each.id <= row.id));
}

function statusEvent(row: LogRow, view: JobView): SSEMessage {
  return { id: String(row.id), event: 'status', data: view };
}

function lastId(rows: readonly LogRow[]): number {
  return rows.reduce((max, row) => Math.max(max, row.id), 0);
}

const eventRoutes: FastifyPluginAsync<EventRouteOptions> = async (app, { heartbeatMs = 15_000 }) => {
  // Registered here, so only these routes stream.
  await app.register(fastifySSE, { heartbeatInterval: heartbeatMs });
  const lookup = createJobLookup(app.backupQueue, app.logStore);

  /** Subscribes a stream to the hub until its client goes; events wait until `ready` is called. */
  function subscribe(reply: FastifyReply, handle: (event: JobEvent) => void) {
    const sender = eventSender(reply);
    const early: JobEvent[] = [];
    let live = false;
    const unsubscribe = app.jobEvents.subscribe({
      onEvent: (event) => (live ? handle(event) : early.push(event)),
      close: () => sender.close(),
    });
    reply.sse.onClose(unsubscribe);
    return {
      sender,
      unsubscribe,
      /** Handles what came meanwhile, then events as they come. */
      ready(): void {
        live = true;
        for (const event of early.splice(0)) handle(event);
        sender.start();
      },
    };
  }

  app.get<{ Params: { id: string } }>(
    '/jobs/:id/events',
    {
      sse: { kind: 'only' },
      config: { access: ANY_ROLE },
      schema: {
        operationId: 'streamJobEvents',
        summary: "One job's events, live (Server-Sent Events)",
        description:
          "First a `job` event with the job's current view (as `GET /jobs/:id`), then `progress` events " +
          "(the view's `progress`, at least once a second while the job runs) and a `status` event with the view " +
          'for every transition (`active`, `retrying`, `completed`, `failed`, `cancelled`); the stream ends ' +
          "after the terminal one (at once for a job that has ended). The `job` event's id is the last " +
          'transition the view already shows, or on a resume the `Last-Event-ID` sent. ' +
          RESUME_RULE +
          " An operator sees only the jobs it submitted; others' are 404, as if unknown.",
        tags: ['jobs'],
        params: { type: 'object', required: ['id'], properties: { id: jobIdSchema } },
        response: {
          200: streamResponse('`job`, then `progress` and `status` events with the job view as JSON data'),
          ...errorResponses(400, 401, 403, 404, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const principal = principalOf(request);
      let cursor = 0;
      // Subscribed before the log is read, so that nothing happening meanwhile is missed.
      const stream = subscribe(reply, (event) => {
        if (event.jobId !== id) return;
        if (event.type === 'progress') {
          stream.sender.pushProgress({ event: 'progress', data: event.progress });
          return;
        }
        const fresh = event.history.filter((row) => isTransition(row) && row.id > cursor);
        cursor = Math.max(cursor, lastId(event.history));
        sendTransitions(fresh, event.history, event.view);
      });

      function sendTransitions(rows: readonly LogRow[], history: readonly LogRow[], live: JobView | null): void {
        for (const row of rows) {
          const view = viewAt(history, row, live);
          if (view) stream.sender.push(statusEvent(row, view));
          if (isTerminal(row.status)) stream.sender.end();
        }
      }

      let history: LogRow[];
      let view: JobView | null;
      try {
        // The log first: the view read after it shows at least the transitions it holds.
        history = await app.logStore.history(id);
        view = await lookup.get(id);
        if (!view || !maySeeJob(principal, view.actor)) throw new JobNotFound(id);
      } catch (err) {
        stream.unsubscribe();
        throw err;
      }
      reply.sse.keepAlive();
      const from = resumePoint(reply.sse.lastEventId);
      cursor = lastId(history);
      const first: SSEMessage = { event: 'job', data: view };
      stream.sender.push(
        from === null ? { ...first, id: String(cursor) } : { ...first, id: String(Math.min(from, cursor)) },
      );
      if (from !== null) {
        sendTransitions(
          history.filter((row) => isTransition(row) && row.id > from),
          history,
          view,
        );
      }
      if (isTerminal(view.status)) stream.sender.end();
      stream.ready();
    },
  );

  app.get(
    '/events',
    {
      sse: { kind: 'only' },
      config: { access: ANY_ROLE },
      schema: {
        operationId: 'streamEvents',
        summary: 'Every job transition, live (Server-Sent Events)',
        description:
          'A `status` event with the job view for every transition of every job the token may see ' +
          '(an operator: the jobs it submitted), from the moment of connecting. ' +
          RESUME_RULE +
          ` A resume replays at most the last ${MAX_REPLAY_ROWS} log rows.`,
        tags: ['jobs'],
        response: {
          200: streamResponse('`status` events with the job view as JSON data'),
          ...errorResponses(401, 403, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const actor = seesAllJobs(principal) ? undefined : principal.name;
      // Per job, the last log row told; rows up to `since` were before this stream.
      const told = new Map<string, number>();
      let since = 0;
      const stream = subscribe(reply, (event) => {
        if (event.type !== 'log') return;
        const owner = event.view?.actor ?? event.history.find((row) => row.status === 'queued')?.actor ?? null;
        if (!maySeeJob(principal, owner)) return;
        const after = told.get(event.jobId) ?? since;
        const fresh = event.history.filter((row) => isTransition(row) && row.id > after);
        told.set(event.jobId, Math.max(after, lastId(event.history)));
        for (const row of fresh) {
          const view = viewAt(event.history, row, event.view);
          if (view) stream.sender.push(statusEvent(row, view));
        }
      });

      let replay: LogRow[];
      try {
        const from = resumePoint(reply.sse.lastEventId);
        const newest = (await app.logStore.query({ limit: 1 })).items[0]?.id ?? 0;
        since = from === null ? newest : Math.min(from, newest);
        replay = from === null ? [] : await rowsAfter(since, actor);
        const histories = await app.logStore.histories([...new Set(replay.map((row) => row.jobId ?? ''))]);
        reply.sse.keepAlive();
        // Headers now: the client knows it is subscribed before any transition comes.
        reply.sse.sendHeaders();
        reply.raw.flushHeaders();
        for (const row of replay) {
          const history = (histories.get(row.jobId ?? '') ?? []).filter((each) => each.id <= row.id);
          const view = viewFromLog(history);
          if (view && maySeeJob(principal, view.actor)) stream.sender.push(statusEvent(row, view));
          if (row.jobId) told.set(row.jobId, Math.max(told.get(row.jobId) ?? 0, row.id));
        }
      } catch (err) {
        stream.unsubscribe();
        throw err;
      }
      stream.ready();
    },
  );

  /** Transitions logged after row `since`, oldest first (at most MAX_REPLAY_ROWS rows read). */
  async function rowsAfter(since: number, actor: string | undefined): Promise<LogRow[]> {
    const rows: LogRow[] = [];
    let cursor: number | undefined;
    while (rows.length < MAX_REPLAY_ROWS) {
      const page = await app.logStore.query({ limit: REPLAY_PAGE, cursor, actor });
      const newer = page.items.filter((row) => row.id > since);
      rows.push(...newer);
      if (newer.length < page.items.length || page.nextCursor === null) break;
      cursor = page.nextCursor;
    }
    return rows.filter(isTransition).reverse();
  }
};

export default eventRoutes;
