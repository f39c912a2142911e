import fp from 'fastify-plugin';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { accessOf } from '../auth/roles.js';

/**
 * OpenAPI built from the route schemas, served at /docs (UI) and /docs/json. Every route needs
 * the bearer token unless its `config.access` says `public`: the document's `security` is derived
 * from that here, for every route registered after this plugin, so it says what authentication
 * enforces. Register it after the auth plugin, whose hook sets the docs UI's own access.
 */
export default fp(
  async (app) => {
    app.addHook('onRoute', (route) => {
      if (accessOf(route.config?.access) === 'public') route.schema = { ...route.schema, security: [] };
    });
    await app.register(swagger, {
      openapi: {
        info: {
          title: 'Coffer',
          description:
            'Backup jobs over HTTP: queue a backup, poll the job, read the log. ' +
            'Send a Coffer API token as `Authorization: Bearer <token>` on every operation but those marked otherwise.',
          version: '0.1.0',
          contact: { name: 'Coffer maintainers' },
        },
        servers: [{ url: '/', description: 'The Coffer API serving this document' }],
        tags: [
          { name: 'jobs', description: 'Backup jobs' },
          { name: 'snapshots', description: 'Snapshots of backups: catalog, manifests, restore, verify' },
          { name: 'policies', description: 'Destinations, retention and prune, schedules' },
          { name: 'logs', description: 'The log of status transitions' },
          { name: 'health', description: 'Liveness, readiness, metrics' },
          { name: 'tokens', description: 'API tokens (admin)' },
          { name: 'webhooks', description: 'Webhooks: job transitions POSTed to a URL, signed (admin)' },
        ],
        components: {
          securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'A Coffer API token (cfr_…)' } },
        },
        security: [{ bearer: [] }],
      },
      refResolver: {
        buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`),
      },
    });
    await app.register(swaggerUi, { routePrefix: '/docs' });
  },
  { name: 'docs', dependencies: ['auth'] },
);
