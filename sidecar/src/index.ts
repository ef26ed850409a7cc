/** What other components (local mode, benchmarks) embed. */
export { createSidecar, type Sidecar, type SidecarDeps, type SidecarState, type StateMessage } from './sidecar';
export { loadSidecarConfig, sidecarConfig, SIDECAR_CONFIG, type SidecarConfig } from './config';
