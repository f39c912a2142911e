import fp from 'fastify-plugin';
import { createTokenRepository, type TokenRepository } from '../auth/token-repository.js';
import { unavailableOnFailure } from '../unavailable.js';

declare module 'fastify' {
  interface FastifyInstance {
    tokenStore: TokenRepository;
  }
}

/** The `api_token` repository. */
export default fp(
  async (app) => {
    app.decorate('tokenStore', unavailableOnFailure(createTokenRepository(app.mysql)));
  },
  { name: 'token-store', dependencies: ['mysql'] },
);
