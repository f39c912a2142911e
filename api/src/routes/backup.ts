import type { FastifyPluginAsync } from 'fastify';
import type { CofferConfig } from '@coffer/shared';
import { SUBMITTERS } from '../auth/roles.js';
import { principalOf } from '../plugins/auth.js';
import { acceptedJob, acceptedJobResponse, idempotencyKeyHeader } from '../jobs/accepted-job.js';
import { backupRequestSchema, prepareBackup, type BackupRequest } from '../jobs/backup-request.js';
import { errorResponses } from '../schemas.js';

const backupRoutes: FastifyPluginAsync<{ config: CofferConfig }> = async (app, { config }) => {
  app.post<{ Body: BackupRequest; Headers: { 'idempotency-key'?: string } }>(
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
        body: backupRequestSchema,
        response: {
          202: acceptedJobResponse,
          ...errorResponses(400, 401, 403, 413, 415, 422, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      // Before the Idempotency-Key is taken, so a refusal leaves the key free.
      const data = await prepareBackup(app, config, principal, request.body);
      const { id, replayed } = await app.submitJob({
        item: { name: 'backup', data },
        actor: principal.name,
        idempotencyKey: request.headers['idempotency-key'],
      });
      return acceptedJob(reply, id, replayed);
    },
  );
};

export default backupRoutes;
