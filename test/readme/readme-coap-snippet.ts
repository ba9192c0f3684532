import coap from "coap";

/** The README's CoAP example (a device on node-coap's client), run as written. */
export async function readmeCoapSnippet(port: number, password: string): Promise<string> {
  const request = coap.request({
    hostname: "localhost",
    port, // 5683 with `--coap localhost:5683`
    method: "POST",
    pathname: "/v1/thermostat/t1/reported",
    query: `token=${password}&seq=1`, // the password `doppel devices provision` printed; Doppel-Seq 1
  });
  request.setOption("Content-Format", "application/json"); // or application/cbor (60)
  request.end(JSON.stringify({ temperature: 19.5 }));
  const response = await new Promise<coap.IncomingMessage>((resolve) => request.on("response", resolve));
  console.log(response.code); // "2.04" once the report is durable; "4.01" without a valid token
  return response.code;
}
