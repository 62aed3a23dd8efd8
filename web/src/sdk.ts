// The one place the web client imports the SDK from (clients/typescript, from source).
export * from "@parlor/client";
