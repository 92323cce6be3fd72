/**
 * The container securityContext of the restricted Pod Security Standard, in one
 * place for every pod the chart runs (the gateway and the helm test), so the
 * policy cannot drift between them.
 */
import * as kplus from 'cdk8s-plus-28';

/** Non-root as `user`/`group`, read-only root, no privilege escalation, no capabilities, seccomp RuntimeDefault. */
export function restrictedContainerSecurity(user: number, group: number): kplus.ContainerSecurityContextProps {
  return {
    ensureNonRoot: true,
    user,
    group,
    readOnlyRootFilesystem: true,
    allowPrivilegeEscalation: false,
    privileged: false,
    capabilities: { drop: [kplus.Capability.ALL] },
    seccompProfile: { type: kplus.SeccompProfileType.RUNTIME_DEFAULT },
  };
}
