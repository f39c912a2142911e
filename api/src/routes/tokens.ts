import type { FastifyPluginAsync } from 'fastify';
import { MAX_PATH_LENGTH, type CofferConfig } from '@coffer/shared';
import { ADMIN_ONLY, ROLES } from '../auth/roles.js';
import { MAX_TOKEN_ROOTS, RevocationNotShared, createToken, revokeToken, viewOf } from '../auth/token-admin.js';
import { QueueUnavailable, TokenNotFound } from '../errors.js';
import { principalOf } from '../plugins/auth.js';
import { errorResponses } from '../schemas.js';

const tokenProperties = {
  id: { type: 'integer' },
  name: { type: 'string' },
  role: { type: 'string', enum: ROLES },
  sourceRoots: {
    type: ['array', 'null'],
    items: { type: 'string' },
    description: 'Folders inside SOURCE_ROOTS the token may back up; null: all of SOURCE_ROOTS',
  },
  createdAt: { type: 'string', format: 'date-time' },
  lastUsedAt: { type: ['string', 'null'], format: 'date-time', description: 'Updated at most once a minute' },
  revokedAt: { type: ['string', 'null'], format: 'date-time' },
} as const;
const tokenRequired = ['id', 'name', 'role', 'sourceRoots', 'createdAt', 'lastUsedAt', 'revokedAt'];
const tokenView = { type: 'object', properties: tokenProperties, required: tokenRequired } as const;

interface CreateBody {
  name: string;
  role: (typeof ROLES)[number];
  sourceRoots?: string[];
}

const tokenRoutes: FastifyPluginAsync<{ config: CofferConfig }> = async (app, { config }) => {
  const admins = { access: ADMIN_ONLY };

  app.post<{ Body: CreateBody }>(
    '/tokens',
    {
      config: admins,
      schema: {
        operationId: 'createToken',
        summary: 'Create an API token (admin); the answer is the only time its secret is shown',
        description:
          'The token may do what its role allows (admin, operator, viewer); with sourceRoots, it backs up only ' +
          'inside those folders. Store the secret at once: Coffer keeps only its hash.',
        tags: ['tokens'],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['name', 'role'],
          properties: {
            name: { type: 'string', minLength: 1, maxLength: 64, description: 'Unique, never reused' },
            role: { type: 'string', enum: ROLES },
            sourceRoots: {
              type: 'array',
              minItems: 1,
              maxItems: MAX_TOKEN_ROOTS,
              items: { type: 'string', minLength: 1, maxLength: MAX_PATH_LENGTH },
              description: 'Limit the token to these folders inside SOURCE_ROOTS',
            },
          },
        },
        response: {
          201: {
            type: 'object',
            properties: { ...tokenProperties, token: { type: 'string', description: 'The secret; shown once' } },
            required: [...tokenRequired, 'token'],
          },
          ...errorResponses(400, 401, 403, 409, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const { token, record } = await createToken(app.tokenStore, config, request.body);
      request.log.info(
        { tokenId: record.id, name: record.name, role: record.role, by: principalOf(request).name },
        'token created',
      );
      // The secret must not stay in any cache on the way.
      return reply
        .code(201)
        .header('cache-control', 'no-store')
        .send({ ...viewOf(record), token });
    },
  );

  app.get(
    '/tokens',
    {
      config: admins,
      schema: {
        operationId: 'listTokens',
        summary: 'Every token, revoked ones too, without secrets (admin)',
        description: 'Oldest first; the secrets themselves are never stored, so never listed.',
        tags: ['tokens'],
        response: {
          200: { type: 'object', properties: { items: { type: 'array', items: tokenView } }, required: ['items'] },
          ...errorResponses(401, 403, 429, 503),
        },
      },
    },
    async () => ({ items: (await app.tokenStore.list()).map(viewOf) }),
  );

  app.delete<{ Params: { id: string } }>(
    '/tokens/:id',
    {
      config: admins,
      schema: {
        operationId: 'revokeToken',
        summary: 'Revoke a token (admin): it stops working at once; its name stays taken',
        description:
          'Recorded in MySQL and in Redis (so API replicas that cannot reach MySQL refuse it too), and pushed to every ' +
          'API replica, which drops it from its token cache; the answer comes once every replica has confirmed (at most ' +
          '2 s; one that has not forgets the token within 30 s). While Redis does not answer: 503 QUEUE_UNAVAILABLE; ' +
          'this replica refuses the token already, others within 30 s; repeat the call.',
        tags: ['tokens'],
        params: {
          type: 'object',
          required: ['id'],
          properties: { id: { type: 'string', pattern: '^[0-9]{1,15}$' } },
        },
        response: { 200: tokenView, ...errorResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request) => {
      const record = await revokeToken(app.tokenStore, app.revocations, Number(request.params.id)).catch(
        (err: unknown) => {
          if (!(err instanceof RevocationNotShared)) throw err;
          // Refused wherever MySQL answers already; the caller repeats the call to finish.
          app.tokenRevoked(err.record);
          request.log.warn({ err, tokenId: err.record.id }, 'token revoked in MySQL only');
          throw new QueueUnavailable({ cause: err });
        },
      );
      if (!record) throw new TokenNotFound(request.params.id);
      app.tokenRevoked(record);
      request.log.info({ tokenId: record.id, tokenName: record.name, by: principalOf(request).name }, 'token revoked');
      return viewOf(record);
    },
  );
};

export default tokenRoutes;
