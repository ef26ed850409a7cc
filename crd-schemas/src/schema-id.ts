/** The `$id` under which validators register the SessionLivedBackend schema; API schemas `$ref` into it. */
export const SCHEMA_ID = 'https://spawner.dev/schemas/session-lived-backend.json';
