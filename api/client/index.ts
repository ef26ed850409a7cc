export { SpawnerClient, SpawnerError, type SpawnerClientOptions, type ListOptions, type CreateResult } from './spawner-client';
export { readEvents, type ServerSentEvent } from '../../common/src/sse';
export * from './types';
