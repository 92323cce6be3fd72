/** The SMTP listeners as the chart publishes them: container port, port name, Service port and Service group. */
import { CONTAINER_PORTS, type ListenerName } from '../../gateway/src/config/constants';
import { valueRef } from '../values/ref';

/** A listener group is one Service (one NLB): the chart runs two. */
export type ServiceGroup = 'smtp' | 'submission';

export interface Listener {
  readonly name: ListenerName;
  /** Container port name (≤ 15 characters, IANA style). */
  readonly portName: string;
  readonly containerPort: number;
  readonly group: ServiceGroup;
}

export const LISTENERS: readonly Listener[] = [
  { name: 'relay', portName: 'smtp', containerPort: CONTAINER_PORTS.relay, group: 'smtp' },
  { name: 'submission', portName: 'submission', containerPort: CONTAINER_PORTS.submission, group: 'submission' },
  { name: 'smtps', portName: 'smtps', containerPort: CONTAINER_PORTS.smtps, group: 'submission' },
];

export const OPS_PORT_NAME = 'ops';

/** `.Values` path of the port the listener's Service publishes it on. */
export const servicePort = (listener: Listener) => valueRef(`services.${listener.group}.ports.${listener.name}`);

/** The listeners one Service publishes. */
export const listenersOf = (group: ServiceGroup) => LISTENERS.filter((l) => l.group === group);

/** Go template condition: the listener is enabled in the gateway config. */
export const listenerEnabled = (listener: Listener) => `.Values.config.listeners.${listener.name}.enabled`;

/** Go template condition: at least one of the listeners is enabled. */
export function anyEnabled(listeners: readonly Listener[]): string {
  const conditions = listeners.map(listenerEnabled);
  return conditions.length === 1 ? conditions[0] : `(or ${conditions.join(' ')})`;
}

/** Go template condition: at least one listener of the group is enabled. */
export function groupEnabled(group: ServiceGroup): string {
  return anyEnabled(listenersOf(group));
}
