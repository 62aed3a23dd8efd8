// The wire types, generated from proto/parlor/v1 into the SDK's src/gen.
export * from "@parlor/client/gen/parlor/v1/parlor_pb.js";
export * from "@parlor/client/gen/parlor/v1/games_pb.js";
