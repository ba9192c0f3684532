/**
 * The layers of Doppel, checked by `npm run check` (dependency-cruiser). Imports go one way, down:
 *
 *   twins → entry points (runtime/*.ts) → cli, testing → node (wiring) → edges: grpc, devices, sim, web, replication
 *   → api (the service operations and call pipeline both grpc and web serve) → routing → engine → persistence, shadow, query, security → observability → core → cluster/
 *
 * `cluster/` imports nothing from `runtime/`; twins import Doppel only by package name; the device
 * client (doppel/device) imports only the device protocol and codecs, not the device server side.
 * A violation prints the importing file, the imported one and the rule it breaks.
 */
const layers = [
  ["core"],
  ["observability"],
  ["shadow", "query", "security"],
  ["persistence"],
  ["engine"],
  ["routing"],
  ["api"],
  ["grpc", "devices", "sim", "web", "replication"],
  ["node"],
  ["testing", "cli"],
];
const folder = (names) => `^runtime/(${names.join("|")})/`;

/** For every layer: no import of a folder in a layer above it. */
const layerRules = layers.map((names, rank) => {
  const above = layers.slice(rank + 1).flat();
  return {
    name: `layer-${names.join("-")}`,
    comment: `${names.join(", ")} may import only what lies below: ${layers.slice(0, rank).flat().join(", ") || "nothing but core itself"} (and cluster/)`,
    severity: "error",
    from: { path: folder(names) },
    to: { path: [folder(above), "^runtime/[^/]+\\.ts$"] },
  };
});

module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: "edges-apart",
      comment:
        "the edges (grpc, devices, web) do not import each other; sim drives devices only through the device client",
      severity: "error",
      from: { path: "^runtime/(grpc|devices|web)/" },
      to: { path: "^runtime/(grpc|devices|web|sim)/", pathNot: "^runtime/$1/" },
    },
    {
      name: "sim-uses-device-client",
      severity: "error",
      from: { path: "^runtime/sim/" },
      to: { path: "^runtime/(grpc|devices/(ingress|egress)|devices/device-link)" },
    },
    {
      name: "device-client-standalone",
      comment:
        "doppel/device runs on gateways: the client imports the protocol and codecs, never ingress or egress",
      severity: "error",
      from: { path: "^runtime/devices/(client/|protocol\\.ts|payload-codec\\.ts)" },
      to: { path: "^runtime/devices/(ingress|egress|device-link)" },
    },
    {
      name: "cluster-independent",
      comment: "cluster/ (ring, membership, leases, transport) knows nothing of runtime/",
      severity: "error",
      from: { path: "^cluster/" },
      to: { path: "^runtime/" },
    },
    {
      name: "twins-by-package-name",
      comment: "example twins import Doppel by name (`doppel`), as users do",
      severity: "error",
      from: { path: "^twins/" },
      to: { path: "^(runtime|cluster)/" },
    },
    {
      name: "relative-inside",
      comment: "inside runtime/ and cluster/ modules import each other by path; `doppel` names are for users",
      severity: "error",
      from: { path: "^(runtime|cluster)/" },
      to: { path: "^doppel(/|$)" },
    },
    {
      name: "no-circular",
      comment: "no module imports itself through others",
      severity: "error",
      from: { path: "^(runtime|cluster)/" },
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "^runtime/grpc/generated/" },
    tsConfig: { fileName: "tsconfig.json" },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { conditionNames: ["source", "import", "default"] },
  },
};
