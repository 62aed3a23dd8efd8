export * from "./gen/parlor/v1/parlor_pb.js";
export * from "./gen/parlor/v1/games_pb.js";
