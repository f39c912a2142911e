import { posix } from 'node:path';
import type { FastifyPluginAsync } from 'fastify';
import {
  normaliseAbsolutePath,
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
  SourceInvalid,
  SourceOutsideRoots,
  SourceOverlapsBackupRoot,
} from '../errors.js';
import { acceptedJob, acceptedJobResponse, idempotencyKeyHeader } from '../jobs/accepted-job.js';
import { errorResponses } from '../schemas.js';

interface BackupBody {
  source: string;
  destination?: string;
  incremental?: boolean;
}

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

const backupRoutes: FastifyPluginAsync<{ config: CofferConfig }> = async (app, { config }) => {
  app.post<{ Body: BackupBody; Headers: { 'idempotency-key'?: string } }>(
    '/backup',
    {
      config: { access: SUBMITTERS, jobKind: 'backup' },
      schema: {
        operationId: 'submitBackup',
        summary: 'Queue a backup of a file or folder',
        description:
          'Answers 202 with the job id as soon as the job is queued (Location: /jobs/{id}); a worker then copies the ' +
          'source into a new dated snapshot under the destination. With an Idempotency-Key (per token), the same request ' +
          'repeated within a day answers the same job; the key with another body is 422.',
        tags: ['jobs'],
        headers: idempotencyKeyHeader,
        body: bodySchema,
        response: {
          202: acceptedJobResponse,
          ...errorResponses(400, 401, 403, 413, 415, 422, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const problem = checkSourcePath(request.body.source);
      if (problem) throw new SourceInvalid(problem.message);
      const source = normaliseAbsolutePath(request.body.source);
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
      // Submitted as it will run, so another spelling of the same body is the same request.
      const narrowed = principal.sourceRoots ? { sourceRoots: [...roots] } : {};
      const data = { source, destination, incremental: request.body.incremental ?? true, ...narrowed };
      const { id, replayed } = await app.submitJob({
        item: { name: 'backup', data: { ...data, actor: principal.name } },
        actor: principal.name,
        idempotencyKey: request.headers['idempotency-key'],
      });
      return acceptedJob(reply, id, replayed);
    },
  );
};

export default backupRoutes;
