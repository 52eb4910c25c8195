// The console's entry point: registers every page and starts the router (docs/console.md).
import { boot } from "./core.js";
import "./user.js";
import "./admin.js";

boot();
