import fp from 'fastify-plugin';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';

/** OpenAPI built from the route schemas, served at /docs (UI) and /docs/json. */
export default fp(
  async (app) => {
    await app.register(swagger, {
      openapi: {
        info: {
          title: 'Coffer',
          description: 'Backup jobs over HTTP: queue a backup, poll the job, read the log.',
          version: '0.1.0',
        },
        tags: [
          { name: 'jobs', description: 'Backup jobs' },
          { name: 'logs', description: 'The log of status transitions' },
          { name: 'health', description: 'Liveness, readiness, metrics' },
          { name: 'tokens', description: 'API tokens (admin)' },
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
  { name: 'docs' },
);
