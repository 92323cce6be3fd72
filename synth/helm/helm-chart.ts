/**
 * A cdk8s Chart that becomes a Helm chart: constructs inside it register each
 * ApiObject as a template file (optionally conditional as a whole) and define
 * named templates for _helpers.tpl; `templates()` renders them all through the
 * emitter. Nothing here knows about the smtp-gateway.
 */
import { ApiObject, App, Chart, JsonPatch } from 'cdk8s';
import type { IConstruct } from 'constructs';
import { TemplateEmitter } from './emit-template';
import { TokenRegistry } from './tokens';

export interface TemplateOptions {
  /** File under templates/, e.g. `deployment.yaml`. Several objects may share one file. */
  readonly file: string;
  /** Render the object only when this Go template condition holds. */
  readonly if?: string;
}

/** Labels cdk8s-plus adds for its own selectors; the chart selects by name and instance only. */
const CDK8S_LABELS = ['cdk8s.io/metadata.addr'];

export class HelmChart extends Chart {
  /** The HelmChart a construct belongs to. */
  static override of(construct: IConstruct): HelmChart {
    const found = construct.node.scopes.find((scope): scope is HelmChart => scope instanceof HelmChart);
    if (!found) throw new Error(`${construct.node.path} is not inside a HelmChart`);
    return found;
  }

  readonly tokens = new TokenRegistry();
  private readonly options = new Map<ApiObject, TemplateOptions>();
  private readonly defines = new Map<string, string>();
  private readonly patches = new Map<ApiObject, JsonPatch[]>();
  private readonly transforms: Array<{ object?: ApiObject; transform: ManifestTransform }> = [];
  private readonly rawTemplates = new Map<string, string>();

  constructor(
    app: App,
    /** The chart name: the prefix of every named template. */
    readonly chartName: string,
  ) {
    super(app, chartName, { disableResourceNameHashes: true });
  }

  /** Puts an ApiObject into a template file. Every ApiObject in the chart must be placed. */
  template(object: ApiObject, options: TemplateOptions): void {
    checkFileName(options.file);
    this.options.set(object, options);
  }

  /**
   * JSON patches applied to the object's final manifest. Unlike ApiObject.addJsonPatch they run after
   * the typed serialiser, which would drop or choke on value references where it expects a list or map.
   */
  patch(object: ApiObject, ...patches: JsonPatch[]): void {
    this.patches.set(object, [...(this.patches.get(object) ?? []), ...patches]);
  }

  /**
   * A change to the object's final manifest after its patches, for edits that depend on what the manifest
   * already holds (wrapping a synthesised value in template logic). Without an object: every object.
   */
  transform(object: ApiObject | undefined, transform: ManifestTransform): void {
    this.transforms.push({ object, transform });
  }

  /** A template file written as it is, for what is not one object (e.g. objects listed in values). */
  rawTemplate(file: string, text: string): void {
    checkFileName(file);
    if (this.rawTemplates.has(file)) throw new Error(`Template file "${file}" is written twice`);
    this.rawTemplates.set(file, text);
  }

  /** Adds `{{- define "<chart>.<name>" -}}` to _helpers.tpl and returns its full name. */
  define(name: string, body: string): string {
    const full = `${this.chartName}.${name}`;
    const existing = this.defines.get(full);
    if (existing !== undefined && existing !== body) throw new Error(`Named template "${full}" is defined twice with different bodies`);
    this.defines.set(full, body);
    return full;
  }

  /** `include "<chart>.<name>" <context>` for a defined template. */
  include(name: string, context = '.'): string {
    const full = `${this.chartName}.${name}`;
    if (!this.defines.has(full)) throw new Error(`Named template "${full}" is not defined; define it before including it`);
    return `include "${full}" ${context}`;
  }

  /** The _helpers.tpl text. */
  helpers(): string {
    return [...this.defines]
      .map(([name, body]) => `{{- define "${name}" -}}\n${body.trim()}\n{{- end }}\n`)
      .join('\n');
  }

  /** Template file name → text, in construct order. */
  templates(): Map<string, string> {
    const emitter = new TemplateEmitter(this.tokens);
    const files = new Map<string, string[]>();
    for (const object of this.node.findAll().filter((c): c is ApiObject => c instanceof ApiObject)) {
      const options = this.options.get(object);
      if (!options) throw new Error(`${object.node.path} (${object.kind}) was not placed in a template file; call HelmChart.template()`);
      const manifest = JsonPatch.apply(object.toJson(), ...(this.patches.get(object) ?? [])) as Record<string, unknown>;
      stripCdk8sLabels(manifest);
      for (const { transform } of this.transforms.filter((t) => t.object === undefined || t.object === object)) transform(manifest);
      const docs = files.get(options.file) ?? [];
      docs.push(emitter.document(manifest, options.if));
      files.set(options.file, docs);
    }
    const rendered = new Map([...files].map(([file, docs]) => [file, docs.join('---\n')]));
    for (const [file, text] of this.rawTemplates) {
      if (rendered.has(file)) throw new Error(`Template file "${file}" holds objects and raw text`);
      rendered.set(file, text);
    }
    return rendered;
  }
}

/** Edits a manifest in place. */
export type ManifestTransform = (manifest: Record<string, any>) => void;

function checkFileName(file: string): void {
  if (!/^([a-z0-9-]+\/)?[a-z0-9][a-z0-9.-]*\.yaml$/.test(file)) {
    throw new Error(`Template file name must be lower-case and end in .yaml, got "${file}"`);
  }
}

function stripCdk8sLabels(manifest: Record<string, unknown>): void {
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(visit);
    if (node === null || typeof node !== 'object') return;
    const record = node as Record<string, unknown>;
    for (const key of ['labels', 'matchLabels']) {
      const labels = record[key] as Record<string, unknown> | undefined;
      if (labels && typeof labels === 'object') for (const label of CDK8S_LABELS) delete labels[label];
    }
    Object.values(record).forEach(visit);
  };
  visit(manifest);
}
