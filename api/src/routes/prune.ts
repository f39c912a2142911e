import type { FastifyPluginAsync } from 'fastify';
import { MAX_DESTINATION_LENGTH, checkDestination, type CofferConfig } from '@coffer/shared';
import { SUBMITTERS } from '../auth/roles.js';
import { DestinationInvalid, DestinationNotOwned, RetentionNotSet } from '../errors.js';
import { acceptedJob, acceptedJobResponse, idempotencyKeyHeader } from '../jobs/accepted-job.js';
import { principalOf } from '../plugins/auth.js';
import { errorResponses } from '../schemas.js';

interface PruneBody {
  destination: string;
  dryRun?: boolean;
}

const bodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['destination'],
  properties: {
    destination: {
      type: 'string',
      minLength: 1,
      maxLength: MAX_DESTINATION_LENGTH,
      description: 'The destination to prune, as named in backups (e.g. trees/main)',
    },
    dryRun: {
      type: 'boolean',
      description: 'Only work out what the policy would keep and remove (the result lists both); default false',
    },
  },
} as const;

const pruneRoutes: FastifyPluginAsync<{ config: CofferConfig }> = async (app) => {
  app.post<{ Body: PruneBody; Headers: { 'idempotency-key'?: string } }>(
    '/prune',
    {
      config: { access: SUBMITTERS, jobKind: 'prune' },
      schema: {
        operationId: 'submitPrune',
        summary: 'Queue a prune of a destination by its retention policy',
        description:
          "A worker removes the destination's snapshots its policy does not keep: each leaves its final name at once, " +
          'its manifest with it, and the catalog marks it deleted; a snapshot a running restore or verify reads stays ' +
          'until that job ends. The result lists the ids kept and removed; with dryRun nothing is removed. A ' +
          'destination without a policy is 409 RETENTION_NOT_SET. Admins prune any destination, operators only those ' +
          'they own.',
        tags: ['policies'],
        headers: idempotencyKeyHeader,
        body: bodySchema,
        response: { 202: acceptedJobResponse, ...errorResponses(400, 401, 403, 409, 413, 415, 422, 429, 503) },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const { destination, dryRun = false } = request.body;
      const problem = checkDestination(destination);
      if (problem) throw new DestinationInvalid(problem.message);
      // Looked up, never claimed: pruning is no write of a backup, so it makes nobody an owner.
      if (principal.role !== 'admin' && (await app.destinations.owner(destination)) !== principal.name) {
        throw new DestinationNotOwned(
          `destination "${destination}" is not one of yours; an operator prunes only the destinations it owns`,
        );
      }
      // Checked after ownership, so an operator learns nothing of others' policies.
      if (!(await app.retention.get(destination)))
        throw new RetentionNotSet(destination, encodeURIComponent(destination));
      const { id, replayed } = await app.submitJob({
        item: { name: 'prune', data: { destination, dryRun, actor: principal.name } },
        actor: principal.name,
        idempotencyKey: request.headers['idempotency-key'],
      });
      return acceptedJob(reply, id, replayed);
    },
  );
};

export default pruneRoutes;
