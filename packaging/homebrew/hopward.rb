# Homebrew formula for the release tarballs of scripts/package.sh tar.
# scripts/package.sh tar writes this file with the version and the
# checksums of the tarballs it finds filled in (target/package/hopward.rb).
class Hopward < Formula
  desc "SSH agent that decides each signature by where it goes"
  homepage "https://github.com/hopward/hopward"
  version "@VERSION@"
  license any_of: ["MIT", "Apache-2.0"]

  on_macos do
    on_arm do
      url "https://github.com/hopward/hopward/releases/download/v@VERSION@/hopward-@VERSION@-aarch64-macos.tar.gz"
      sha256 "@SHA256_aarch64_macos@"
    end
    on_intel do
      url "https://github.com/hopward/hopward/releases/download/v@VERSION@/hopward-@VERSION@-x86_64-macos.tar.gz"
      sha256 "@SHA256_x86_64_macos@"
    end
  end

  on_linux do
    on_intel do
      url "https://github.com/hopward/hopward/releases/download/v@VERSION@/hopward-@VERSION@-x86_64-linux.tar.gz"
      sha256 "@SHA256_x86_64_linux@"
    end
  end

  def install
    bin.install "usr/bin/hopward"
    man1.install Dir["usr/share/man/man1/*.1.gz"]
    man5.install Dir["usr/share/man/man5/*.5.gz"]
    bash_completion.install "usr/share/bash-completion/completions/hopward"
    zsh_completion.install "usr/share/zsh/vendor-completions/_hopward"
    fish_completion.install "usr/share/fish/vendor_completions.d/hopward.fish"
    (pkgshare/"examples").install Dir["usr/share/doc/hopward/examples/*.toml"]
  end

  # The LaunchAgent: the same agent and socket as `hopward install` sets up
  # (launchd/dev.hopward.agent.plist).
  service do
    run [opt_bin/"hopward", "daemon", "-D", "-a", "#{Dir.home}/.hopward/agent.sock"]
    keep_alive true
    process_type :interactive
    environment_variables SSH_AUTH_SOCK: "#{Dir.home}/.hopward/agent.sock"
    log_path "#{Dir.home}/Library/Logs/hopward.log"
    error_log_path "#{Dir.home}/Library/Logs/hopward.log"
  end

  def caveats
    <<~EOS
      Start the agent with `brew services start hopward`, then put
        export SSH_AUTH_SOCK="$HOME/.hopward/agent.sock"
      in your shell profile. Example policies are in #{opt_pkgshare}/examples.
    EOS
  end

  test do
    assert_match "hopward", shell_output("#{bin}/hopward --version")
    (testpath/"policy.toml").write "[defaults]\nlocal = \"allow\"\n"
    system bin/"hopward", "policy", "check", testpath/"policy.toml"
  end
end
