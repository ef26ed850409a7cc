/**
 * client-node's KubeConfig, for the operator (its framework needs one) and the test tools. It
 * reads every kind of kubeconfig but costs about 40 MB of RSS; the sweeper and the API load
 * theirs through ./credentials, which falls back to this module only when it must.
 */
import { KubeConfig } from '@kubernetes/client-node';

export function loadKubeConfig(kubeconfigPath?: string): KubeConfig {
  const kc = new KubeConfig();
  if (kubeconfigPath) kc.loadFromFile(kubeconfigPath);
  else kc.loadFromDefault();
  return kc;
}
