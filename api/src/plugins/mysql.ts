import fp from 'fastify-plugin';
import type { Pool } from 'mysql2/promise';
import { createMysqlPool, type CofferConfig } from '@coffer/shared';

declare module 'fastify' {
  interface FastifyInstance {
    /** The pool behind the log and the token store, every wait on it bounded; closed with the app. */
    mysql: Pool;
  }
}

export default fp<{ config: CofferConfig }>(
  async (app, { config }) => {
    const pool = createMysqlPool(config.mysql, { limits: config.mysqlLimits });
    app.decorate('mysql', pool);
    app.addHook('onClose', async () => {
      await pool.end();
    });
  },
  { name: 'mysql' },
);
