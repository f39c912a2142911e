import type { FastifyPluginAsync } from 'fastify';

const CHECK_TIMEOUT_MS = 1500;

async function check(probe: () => Promise<unknown>): Promise<'up' | 'down'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('timeout')), CHECK_TIMEOUT_MS);
  });
  try {
    await Promise.race([probe(), timeout]);
    return 'up';
  } catch {
    return 'down';
  } finally {
    clearTimeout(timer);
  }
}

const healthRoutes: FastifyPluginAsync = async (app) => {
  app.get(
    '/health',
    {
      config: { access: 'public' },
      schema: {
        operationId: 'getHealth',
        summary: 'Liveness: 200 while the process runs',
        description: 'Answers without asking Redis or MySQL: a liveness probe, where /ready is the readiness probe.',
        tags: ['health'],
        response: { 200: { type: 'object', properties: { status: { type: 'string' } } } },
      },
    },
    async () => ({ status: 'ok' }),
  );

  app.get(
    '/ready',
    {
      config: { access: 'public' },
      schema: {
        operationId: 'getReadiness',
        summary: 'Readiness: 200 when Redis and MySQL answer, else 503 naming the one that does not',
        description: `Pings Redis and MySQL, each given ${CHECK_TIMEOUT_MS} ms; take the API out of rotation while this is 503.`,
        tags: ['health'],
        response: {
          200: {
            type: 'object',
            properties: { status: { type: 'string' }, redis: { type: 'string' }, mysql: { type: 'string' } },
          },
          503: {
            type: 'object',
            properties: {
              statusCode: { type: 'integer' },
              error: { type: 'string' },
              message: { type: 'string' },
              code: { type: 'string' },
              redis: { type: 'string' },
              mysql: { type: 'string' },
            },
          },
        },
      },
    },
    async (_request, reply) => {
      const [redis, mysql] = await Promise.all([check(() => app.redis.ping()), check(() => app.logStore.ping())]);
      if (redis === 'up' && mysql === 'up') return { status: 'ready', redis, mysql };
      const down = [redis === 'down' ? 'Redis' : null, mysql === 'down' ? 'MySQL' : null].filter(Boolean);
      return reply.code(503).send({
        statusCode: 503,
        error: 'Service Unavailable',
        message: `not ready: ${down.join(' and ')} ${down.length > 1 ? 'do' : 'does'} not answer`,
        code: 'NOT_READY',
        redis,
        mysql,
      });
    },
  );
};

export default healthRoutes;
