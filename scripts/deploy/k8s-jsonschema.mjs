// Converts the Kubernetes OpenAPI v2 spec (api/openapi-spec/swagger.json of the k8s.io/kubernetes
// Go module) into the JSON schemas kubeconform reads, laid out like its default schema
// repository, so manifests are validated offline:
//
//   node scripts/deploy/k8s-jsonschema.mjs SWAGGER_JSON OUT_DIR VERSION
//   -> OUT_DIR/VERSION-standalone/<kind>-<group>-<version>.json          (e.g. statefulset-apps-v1.json)
//      OUT_DIR/VERSION-standalone-strict/<kind>-<group>-<version>.json   (unknown fields refused)
//
// What the conversion does (as the schemas kubeconform downloads by default are made):
// - one file per kind (x-kubernetes-group-version-kind), self-contained ("standalone"): the
//   definitions it reaches are copied into the file and referenced as #/definitions/...;
// - apiVersion and kind are pinned to the kind's own values;
// - IntOrString accepts a string or an integer, Quantity a string or a number (as the API server);
// - an optional field may be null (the API server treats null as unset);
// - strict: every object with declared properties refuses others (additionalProperties: false),
//   which is what makes `kubeconform -strict` reject a misspelt or misplaced field.
// Fails (exit 1, naming the problem) on an unreadable spec, a dangling $ref, or no kinds found.
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const [swaggerPath, outDir, version] = process.argv.slice(2);
if (!swaggerPath || !outDir || !version || !/^v\d+\.\d+\.\d+$/.test(version)) {
  console.error("usage: k8s-jsonschema.mjs SWAGGER_JSON OUT_DIR vX.Y.Z");
  process.exit(2);
}

const fail = (message) => {
  console.error(`k8s-jsonschema: ${message}`);
  process.exit(1);
};

let spec;
try {
  spec = JSON.parse(readFileSync(swaggerPath, "utf8"));
} catch (error) {
  fail(`cannot read ${swaggerPath}: ${error.message}`);
}
const definitions = spec?.definitions;
if (!definitions || typeof definitions !== "object") fail(`${swaggerPath} has no definitions`);

const REF_PREFIX = "#/definitions/";
const INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/** The definitions a schema refers to, transitively (names, without the prefix). */
function closure(rootName) {
  const seen = new Set();
  const todo = [rootName];
  while (todo.length > 0) {
    const name = todo.pop();
    if (seen.has(name)) continue;
    const schema = definitions[name];
    if (!schema) fail(`dangling $ref to ${name}`);
    seen.add(name);
    walk(schema, (node) => {
      if (typeof node.$ref === "string") {
        if (!node.$ref.startsWith(REF_PREFIX)) fail(`unsupported $ref ${node.$ref} in ${name}`);
        todo.push(node.$ref.slice(REF_PREFIX.length));
      }
    });
  }
  return seen;
}

function walk(node, visit) {
  if (Array.isArray(node)) {
    for (const item of node) walk(item, visit);
  } else if (node && typeof node === "object") {
    visit(node);
    for (const value of Object.values(node)) walk(value, visit);
  }
}

/** A transformed deep copy of one schema (see the header for what changes). */
function transform(schema, strict, name) {
  if (name === INT_OR_STRING) return { oneOf: [{ type: "string" }, { type: "integer" }] };
  if (name === QUANTITY) return { oneOf: [{ type: "string" }, { type: "number" }] };
  return copy(schema, strict);
}

function copy(node, strict) {
  if (Array.isArray(node)) return node.map((item) => copy(item, strict));
  if (!node || typeof node !== "object") return node;
  const out = {};
  for (const [key, value] of Object.entries(node)) {
    if (key === "description") continue; // keeps the files small; not used to validate
    if (key === "properties" && value && typeof value === "object") {
      const required = new Set(Array.isArray(node.required) ? node.required : []);
      const props = {};
      for (const [prop, propSchema] of Object.entries(value)) {
        const converted = copy(propSchema, strict);
        if (!required.has(prop) && typeof converted.type === "string")
          converted.type = [converted.type, "null"];
        props[prop] = converted;
      }
      out.properties = props;
    } else {
      out[key] = copy(value, strict);
    }
  }
  if (strict && out.properties && out.additionalProperties === undefined) out.additionalProperties = false;
  return out;
}

function fileName(gvk) {
  const group = gvk.group ? `-${gvk.group.split(".")[0].toLowerCase()}` : "";
  return `${gvk.kind.toLowerCase()}${group}-${gvk.version.toLowerCase()}.json`;
}

function build(strict) {
  const dir = join(outDir, `${version}-standalone${strict ? "-strict" : ""}`);
  const tmp = `${dir}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  let count = 0;
  for (const [name, schema] of Object.entries(definitions)) {
    const kinds = schema["x-kubernetes-group-version-kind"];
    if (!Array.isArray(kinds)) continue;
    const reached = closure(name);
    reached.delete(name);
    const local = {};
    for (const dep of [...reached].sort()) local[dep] = transform(definitions[dep], strict, dep);
    for (const gvk of kinds) {
      const root = transform(schema, strict, name);
      const apiVersion = gvk.group ? `${gvk.group}/${gvk.version}` : gvk.version;
      if (root.properties?.apiVersion) root.properties.apiVersion = { type: "string", enum: [apiVersion] };
      if (root.properties?.kind) root.properties.kind = { type: "string", enum: [gvk.kind] };
      root.$schema = "http://json-schema.org/draft-04/schema#";
      if (Object.keys(local).length > 0) root.definitions = local;
      writeFileSync(join(tmp, fileName(gvk)), JSON.stringify(root));
      count++;
    }
  }
  if (count === 0) fail(`no kinds (x-kubernetes-group-version-kind) in ${swaggerPath}`);
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return count;
}

const plain = build(false);
const strict = build(true);
console.error(
  `k8s-jsonschema: ${plain} schemas (and ${strict} strict) for Kubernetes ${version} in ${outDir}`,
);
