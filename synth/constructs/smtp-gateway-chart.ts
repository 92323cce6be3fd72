/** The smtp-gateway Helm chart: every resource, each from its own construct. */
import { App } from 'cdk8s';
import { HelmChart } from '../helm/helm-chart';
import { Autoscaling } from './autoscaling';
import { CommonAnnotations } from './common-annotations';
import { DisruptionBudget } from './disruption-budget';
import { ExtraDeploy } from './extra-deploy';
import { GatewayConfig } from './gateway-config';
import { GatewaySecret } from './gateway-secret';
import { GrafanaDashboard } from './grafana-dashboard';
import { MetricsService } from './metrics-service';
import { ChartNames } from './names';
import { GatewayNetworkPolicy } from './network-policy';
import { PrometheusRule } from './prometheus-rule';
import { GatewayServiceAccount } from './service-account';
import { ServiceMonitor } from './service-monitor';
import { SmtpService } from './smtp-service';
import { TestHook } from './test-hook';
import { Workload } from './workload';

export const CHART_NAME = 'smtp-gateway';

export class SmtpGatewayChart extends HelmChart {
  constructor(app: App) {
    super(app, CHART_NAME);
    const names = new ChartNames(this);
    new GatewayServiceAccount(this, 'serviceaccount', { names });
    const config = new GatewayConfig(this, 'config', { names });
    new GatewaySecret(this, 'secret', { names });
    const { deployment } = new Workload(this, 'workload', { names, config });
    new SmtpService(this, 'smtp', { names, group: 'smtp' });
    new SmtpService(this, 'submission', { names, group: 'submission' });
    new MetricsService(this, 'metrics', { names });
    new ServiceMonitor(this, 'servicemonitor', { names });
    new Autoscaling(this, 'autoscaling', { names, deployment });
    new DisruptionBudget(this, 'pdb', { names });
    new GatewayNetworkPolicy(this, 'networkpolicy', { names, deployment });
    new TestHook(this, 'test', { names });
    new PrometheusRule(this, 'prometheusrule', { names });
    new GrafanaDashboard(this, 'dashboard', { names });
    new ExtraDeploy(this, 'extradeploy');
    new CommonAnnotations(this, 'commonannotations');
  }
}
