"use strict";
// Starts Swagger UI (vendor/swagger-ui, pinned) on this service's OpenAPI document.
// A file, not an inline script: /docs runs under the dashboard's Content-Security-Policy.
window.ui = SwaggerUIBundle({
  url: "openapi.json", // relative: works behind a path prefix too
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  // Never send the document to an outside validator, nor keep typed keys after the tab closes.
  validatorUrl: null,
  persistAuthorization: false,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
