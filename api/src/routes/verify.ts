import type { FastifyPluginAsync } from 'fastify';
import { SUBMITTERS } from '../auth/roles.js';
import { acceptedJob, acceptedJobResponse, idempotencyKeyHeader } from '../jobs/accepted-job.js';
import { snapshotReference, visibleSnapshot } from '../jobs/visible-snapshot.js';
import { principalOf } from '../plugins/auth.js';
import { errorResponses, jobIdSchema } from '../schemas.js';

const verifyRoutes: FastifyPluginAsync = async (app) => {
  app.post<{ Body: { snapshot: string }; Headers: { 'idempotency-key'?: string } }>(
    '/verify',
    {
      config: { access: SUBMITTERS, jobKind: 'verify' },
      schema: {
        operationId: 'submitVerify',
        summary: 'Queue a check of a snapshot against its manifest',
        description:
          'A worker reads every file of the snapshot and compares type, size, mode, mtime and SHA-256 with the ' +
          'manifest. Clean: the job completes and the snapshot\'s verify becomes "ok". Otherwise the job fails with ' +
          'SNAPSHOT_DAMAGED, error.problems lists the first 100 entries, and the snapshot\'s verify becomes "damaged".',
        tags: ['snapshots'],
        headers: idempotencyKeyHeader,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['snapshot'],
          properties: { snapshot: { ...jobIdSchema, description: 'The snapshot id (the id of its backup job)' } },
        },
        response: { 202: acceptedJobResponse, ...errorResponses(400, 401, 403, 404, 413, 415, 422, 429, 503) },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const snapshot = await visibleSnapshot(app, principal, request.body.snapshot);
      const { id, replayed } = await app.submitJob({
        item: { name: 'verify', data: { ...snapshotReference(snapshot), actor: principal.name } },
        actor: principal.name,
        idempotencyKey: request.headers['idempotency-key'],
      });
      return acceptedJob(reply, id, replayed);
    },
  );
};

export default verifyRoutes;
