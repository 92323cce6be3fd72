#!/usr/bin/env node
// Turns the Kubernetes OpenAPI v2 spec (api/openapi-spec/swagger.json of the
// k8s.io/kubernetes Go module) and CustomResourceDefinitions into the per-kind
// JSON schemas kubeconform reads offline, in its "-strict" flavour: every object
// that lists its properties gets additionalProperties: false, so a misspelled
// field is an error instead of being silently dropped by the API server.
//
//   node scripts/k8s-json-schemas.mjs OUT_DIR SWAGGER_JSON [CRD_YAML ...]
//
// File names follow kubeconform's default template
// {{ .ResourceKind }}{{ .KindSuffix }}.json, e.g. deployment-apps-v1.json.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';

const [outDir, swaggerPath, ...crdPaths] = process.argv.slice(2);
if (!outDir || !swaggerPath) {
  console.error('usage: k8s-json-schemas.mjs OUT_DIR SWAGGER_JSON [CRD_YAML ...]');
  process.exit(2);
}

/** kubeconform's KindSuffix: "-<first label of the group>-<version>", or "-<version>" for the core group. */
function fileName(kind, group, version) {
  const prefix = group ? `-${group.split('.')[0].toLowerCase()}` : '';
  return `${kind.toLowerCase()}${prefix}-${version.toLowerCase()}.json`;
}

/** Rewrites a schema tree in place: strict objects, int-or-string as a real union, refs to _definitions.json. */
function strictify(node) {
  if (Array.isArray(node)) {
    node.forEach(strictify);
    return node;
  }
  if (node === null || typeof node !== 'object') return node;
  if (typeof node.$ref === 'string' && node.$ref.startsWith('#/definitions/')) {
    node.$ref = `_definitions.json${node.$ref}`;
  }
  if (node.format === 'int-or-string' || node['x-kubernetes-int-or-string'] === true) {
    delete node.type;
    delete node.format;
    delete node.anyOf;
    node.oneOf = [{ type: 'string' }, { type: 'integer' }];
  }
  const opaque = node['x-kubernetes-preserve-unknown-fields'] === true;
  if (node.properties && node.additionalProperties === undefined && !opaque) {
    node.additionalProperties = false;
  }
  for (const value of Object.values(node)) strictify(value);
  return node;
}

mkdirSync(outDir, { recursive: true });
const swagger = JSON.parse(readFileSync(swaggerPath, 'utf8'));
const definitions = strictify(structuredClone(swagger.definitions));
writeFileSync(join(outDir, '_definitions.json'), JSON.stringify({ definitions }));

let written = 0;
for (const [name, schema] of Object.entries(definitions)) {
  for (const gvk of schema['x-kubernetes-group-version-kind'] ?? []) {
    // The per-kind file is the definition itself, so its refs already point at _definitions.json.
    writeFileSync(join(outDir, fileName(gvk.kind, gvk.group, gvk.version)), JSON.stringify({ ...schema, title: name }));
    written++;
  }
}

for (const crdPath of crdPaths) {
  for (const doc of parseAllDocuments(readFileSync(crdPath, 'utf8'))) {
    const crd = doc.toJS();
    if (crd?.kind !== 'CustomResourceDefinition') continue;
    for (const version of crd.spec.versions) {
      const schema = structuredClone(version.schema.openAPIV3Schema);
      // A CRD's own schema leaves metadata open; check it like any other object's.
      schema.properties.metadata = { $ref: '#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta' };
      strictify(schema);
      writeFileSync(join(outDir, fileName(crd.spec.names.kind, crd.spec.group, version.name)), JSON.stringify(schema));
      written++;
    }
  }
}
console.log(`k8s-json-schemas: wrote ${written} schemas to ${outDir}`);
