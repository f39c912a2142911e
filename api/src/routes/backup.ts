import { createHash, randomUUID } from 'node:crypto';
import { posix } from 'node:path';
import type { FastifyPluginAsync } from 'fastify';
import {
  BACKUP_JOB_NAME,
  MAX_DESTINATION_LENGTH,
  MAX_PATH_LENGTH,
  checkDestination,
  checkSourcePath,
  defaultDestination,
  effectiveRoots,
  isInside,
  isInsideRoots,
  overlapsBackupRoot,
  type CofferConfig,
} from '@coffer/shared';
import { SUBMITTERS } from '../auth/roles.js';
import { principalOf } from '../plugins/auth.js';
import { refusalMessage } from '../destinations/destination-access.js';
import {
  DestinationInvalid,
  DestinationNotOwned,
  IdempotencyKeyReused,
  QueueUnavailable,
  SourceInvalid,
  SourceOutsideRoots,
  SourceOverlapsBackupRoot,
} from '../errors.js';
import { errorResponses } from '../schemas.js';

interface BackupBody {
  source: string;
  destination?: string;
  incremental?: boolean;
}

const IDEMPOTENCY_TTL_SECONDS = 86_400;

const bodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['source'],
  properties: {
    source: {
      type: 'string',
      minLength: 1,
      maxLength: MAX_PATH_LENGTH,
      description: 'Absolute path of a file or folder inside SOURCE_ROOTS',
    },
    destination: {
      type: 'string',
      minLength: 1,
      maxLength: MAX_DESTINATION_LENGTH,
      description: 'Relative name under BACKUP_ROOT ([A-Za-z0-9._-] segments); default: the source base name',
    },
    incremental: {
      type: 'boolean',
      description: "Hard-link files unchanged since the destination's previous snapshot; default true",
    },
  },
} as const;

function normaliseSource(source: string): string {
  const normal = posix.normalize(source);
  return normal.length > 1 && normal.endsWith('/') ? normal.slice(0, -1) : normal;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const backupRoutes: FastifyPluginAsync<{ config: CofferConfig }> = async (app, { config }) => {
  // Keys are per token: another token's key neither replays nor reveals this one's job.
  const idempotencyKey = (actor: string, key: string) =>
    `${config.queuePrefix}:idempotency:${createHash('sha256').update(actor).update('\0').update(key).digest('hex')}`;

  app.post<{ Body: BackupBody; Headers: { 'idempotency-key'?: string } }>(
    '/backup',
    {
      config: { access: SUBMITTERS },
      schema: {
        operationId: 'submitBackup',
        summary: 'Queue a backup of a file or folder',
        description:
          'Answers 202 with the job id as soon as the job is queued (Location: /jobs/{id}); a worker then copies the ' +
          'source into a new dated snapshot under the destination. With an Idempotency-Key (per token), the same request ' +
          'repeated within a day answers the same job; the key with another body is 422.',
        tags: ['jobs'],
        headers: {
          type: 'object',
          properties: { 'idempotency-key': { type: 'string', minLength: 1, maxLength: 255 } },
        },
        body: bodySchema,
        response: {
          202: {
            type: 'object',
            properties: { id: { type: 'string' }, status: { type: 'string', enum: ['queued'] } },
            required: ['id', 'status'],
          },
          ...errorResponses(400, 401, 403, 413, 415, 422, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const problem = checkSourcePath(request.body.source);
      if (problem) throw new SourceInvalid(problem.message);
      const source = normaliseSource(request.body.source);
      const roots = effectiveRoots(config.sourceRoots, principal.sourceRoots);
      if (!isInsideRoots(source, roots)) {
        const narrowed = principal.sourceRoots ? ` as narrowed for token "${principal.name}"` : '';
        throw new SourceOutsideRoots(`source "${source}" is not inside SOURCE_ROOTS${narrowed} (${roots.join(':')})`);
      }
      // As text here; the worker checks the real paths again (a link may hide the overlap).
      if (overlapsBackupRoot(source, config.backupRoot)) {
        throw new SourceOverlapsBackupRoot(
          `source "${source}" overlaps BACKUP_ROOT (${config.backupRoot}): Coffer never backs up its own backups`,
        );
      }
      const destination = request.body.destination ?? defaultDestination(source);
      const destinationProblem = checkDestination(destination);
      if (destinationProblem) throw new DestinationInvalid(destinationProblem.message);
      // The segments are safe already; resolving proves no spelling of them leaves BACKUP_ROOT.
      if (!isInside(posix.resolve(config.backupRoot, destination), config.backupRoot)) {
        throw new DestinationInvalid(`destination "${destination}" leads outside BACKUP_ROOT`);
      }
      // Before the Idempotency-Key is taken, so a refusal leaves the key free.
      const refusal = await app.destinations.authorise(principal, destination);
      if (refusal) throw new DestinationNotOwned(refusalMessage(destination, refusal));
      const incremental = request.body.incremental ?? true;

      let id: string = randomUUID();
      const key = request.headers['idempotency-key'];
      if (key !== undefined) {
        // The whole request as it will run: another spelling of the same body is the same request.
        const fingerprint = createHash('sha256')
          .update(JSON.stringify({ source, destination, incremental }))
          .digest('hex');
        let stored: string | null;
        try {
          const claimed = await app.redis.set(
            idempotencyKey(principal.name, key),
            `${fingerprint} ${id}`,
            'EX',
            IDEMPOTENCY_TTL_SECONDS,
            'NX',
          );
          stored = claimed === 'OK' ? null : await app.redis.get(idempotencyKey(principal.name, key));
        } catch (err) {
          throw new QueueUnavailable({ cause: err });
        }
        if (stored !== null) {
          const [storedFingerprint, storedId] = stored.split(' ');
          if (storedFingerprint !== fingerprint || !storedId) throw new IdempotencyKeyReused(key);
          id = storedId;
          return reply
            .code(202)
            .header('location', `/jobs/${id}`)
            .header('idempotent-replayed', 'true')
            .send({ id, status: 'queued' });
        }
      }
      const forget = async () => {
        if (key !== undefined) await app.redis.del(idempotencyKey(principal.name, key)).catch(() => undefined);
      };

      const entry = {
        action: 'backup',
        parameter: source,
        jobId: id,
        attempt: 1,
        worker: config.instanceName,
        destination,
        actor: principal.name,
      } as const;
      // `queued` is written before the job exists, so no worker's `active` can precede it.
      try {
        await app.logStore.append({ ...entry, status: 'queued' });
      } catch (err) {
        await forget();
        throw err;
      }
      try {
        // The worker writes the actor on its rows and checks the real path against the token's roots.
        const data = { source, destination, actor: principal.name, incremental: request.body.incremental };
        const narrowed = principal.sourceRoots ? { sourceRoots: [...roots] } : {};
        await app.backupQueue.add(BACKUP_JOB_NAME, { ...data, ...narrowed }, { jobId: id });
      } catch (err) {
        // The job never reached the queue: close its history so it does not look pending forever.
        await forget();
        await app.logStore
          .append({ ...entry, status: 'failed', code: 'QUEUE_UNAVAILABLE', message: `not queued: ${message(err)}` })
          .catch((logErr: unknown) =>
            request.log.error({ err: logErr, jobId: id }, 'cannot close the history of an unqueued job'),
          );
        throw new QueueUnavailable({ cause: err });
      }
      request.log.info({ jobId: id, destination }, 'backup queued');
      return reply.code(202).header('location', `/jobs/${id}`).send({ id, status: 'queued' });
    },
  );
};

export default backupRoutes;
