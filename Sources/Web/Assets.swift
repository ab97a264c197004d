/// The UI's script and style sheet, embedded in the binary (no CDN, no build step): edited as
/// `Assets/app.js` and `Assets/app.css`.
enum Assets {
  static let script = String(decoding: PackageResources.app_js, as: UTF8.self)
  static let style = String(decoding: PackageResources.app_css, as: UTF8.self)
}
