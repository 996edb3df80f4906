using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace Fulcrum.Tls;

/// <summary>
/// Reads PEM certificates and keys: a full chain (leaf first) with its private key, in one file or
/// two, the key plain or encrypted (PKCS#8 with a password file). Every failure is a sentence that
/// names the file and says what is wrong with it; nothing here throws for a bad file.
/// </summary>
internal static class CertificateFiles
{
    /// <summary>The bytes a certificate is made from: its file, its key's, and the key's password file.</summary>
    internal sealed record Contents(byte[] Cert, byte[] Key, byte[]? Password)
    {
        /// <summary>One hash over the three, so a change in any is seen.</summary>
        public string Signature()
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            hash.AppendData(Cert);
            hash.AppendData("\0key\0"u8);
            hash.AppendData(Key);
            if (Password is not null)
            {
                hash.AppendData("\0password\0"u8);
                hash.AppendData(Password);
            }
            return Convert.ToHexString(hash.GetHashAndReset());
        }
    }

    /// <summary>Reads the files; a file that cannot be read gives the reason instead.</summary>
    public static Contents? Read(string cert, string key, string? passwordFile, out string? error)
    {
        error = null;
        if (!TryRead(cert, "certificate", out var certBytes, ref error) || !TryRead(key, "key", out var keyBytes, ref error))
        {
            return null;
        }
        byte[]? password = null;
        if (passwordFile is not null && !TryRead(passwordFile, "key password", out password, ref error))
        {
            return null;
        }
        return new Contents(certBytes!, keyBytes!, password);
    }

    private static bool TryRead(string path, string what, out byte[]? bytes, ref string? error)
    {
        try
        {
            bytes = File.ReadAllBytes(path);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            bytes = null;
            error = e switch
            {
                FileNotFoundException or DirectoryNotFoundException => $"cannot read the {what} file {path}: it does not exist",
                UnauthorizedAccessException => $"cannot read the {what} file {path}: permission denied",
                _ => $"cannot read the {what} file {path}: {e.Message}",
            };
            return false;
        }
    }

    /// <summary>
    /// Makes a certificate from <paramref name="contents"/>, or says why it cannot: no
    /// certificate in the file, a key that does not parse or is of another kind, a key that is not
    /// the certificate's, a wrong password.
    /// </summary>
    public static LoadedCertificate? Load(string certPath, string keyPath, Contents contents, out string? error)
    {
        error = null;
        var chain = new X509Certificate2Collection();
        try
        {
            chain.ImportFromPem(Encoding.ASCII.GetString(contents.Cert));
        }
        catch (CryptographicException e)
        {
            error = $"{certPath} is not a PEM certificate file ({e.Message})";
            return null;
        }
        if (chain.Count == 0)
        {
            error = $"{certPath} holds no certificate (no '-----BEGIN CERTIFICATE-----' block)";
            return null;
        }
        var leaf = chain[0];
        chain.RemoveAt(0);
        var keyText = Encoding.ASCII.GetString(contents.Key);
        var password = contents.Password is null ? null : Encoding.UTF8.GetString(contents.Password).TrimEnd('\r', '\n');
        if (!keyText.Contains("PRIVATE KEY-----", StringComparison.Ordinal))
        {
            error = $"{keyPath} holds no private key (no '-----BEGIN ... PRIVATE KEY-----' block)";
            return null;
        }
        var encrypted = keyText.Contains("-----BEGIN ENCRYPTED PRIVATE KEY-----", StringComparison.Ordinal);
        if (encrypted && password is null)
        {
            error = $"{keyPath} is encrypted: give its password in key_password_file";
            return null;
        }
        try
        {
            X509Certificate2 withKey;
            if (leaf.GetRSAPublicKey() is { } rsaPublic)
            {
                rsaPublic.Dispose();
                using var rsa = RSA.Create();
                Import(rsa, keyText, password, encrypted);
                withKey = leaf.CopyWithPrivateKey(rsa);
            }
            else if (leaf.GetECDsaPublicKey() is { } ecPublic)
            {
                ecPublic.Dispose();
                using var ec = ECDsa.Create();
                Import(ec, keyText, password, encrypted);
                withKey = leaf.CopyWithPrivateKey(ec);
            }
            else
            {
                error = $"{certPath}: its key is neither RSA nor ECDSA ({leaf.PublicKey.Oid.FriendlyName})";
                return null;
            }
            return new LoadedCertificate(withKey, chain, certPath);
        }
        catch (ArgumentException e) when (e.Message.Contains("does not match", StringComparison.OrdinalIgnoreCase))
        {
            error = $"{keyPath} is not the key of {certPath} (the public keys differ)";
        }
        catch (Exception e) when (e is ArgumentException or CryptographicException)
        {
            error = encrypted
                ? $"{keyPath} cannot be decrypted with the password in key_password_file, or is not a {KindOf(leaf)} key ({e.Message})"
                : $"{keyPath} is not a {KindOf(leaf)} private key in PEM ({e.Message})";
        }
        return null;
    }

    private static string KindOf(X509Certificate2 leaf) => leaf.GetKeyAlgorithm() == "1.2.840.10045.2.1" ? "ECDSA" : "RSA";

    private static void Import(AsymmetricAlgorithm key, string pem, string? password, bool encrypted)
    {
        if (encrypted)
        {
            key.ImportFromEncryptedPem(pem, password);
        }
        else
        {
            key.ImportFromPem(pem);
        }
    }

    /// <summary>
    /// The certificates of a folder: every <c>*.pem</c> and <c>*.crt</c> that holds a certificate,
    /// with its key in the same file or beside it (<c>NAME.key</c>, <c>NAME-key.pem</c> or
    /// <c>NAME.key.pem</c>). Files that hold only a key are keys, not entries. Sorted by name.
    /// </summary>
    public static List<(string Cert, string Key)> InFolder(string dir)
    {
        var entries = new List<(string, string)>();
        var files = Directory.GetFiles(dir);
        Array.Sort(files, StringComparer.Ordinal);
        foreach (var file in files)
        {
            var name = Path.GetFileName(file);
            if (name.StartsWith('.') || !(name.EndsWith(".pem", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".crt", StringComparison.OrdinalIgnoreCase)))
            {
                continue;
            }
            string text;
            try
            {
                text = File.ReadAllText(file);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                entries.Add((file, file)); // its load says why it cannot be read
                continue;
            }
            if (!text.Contains("-----BEGIN CERTIFICATE-----", StringComparison.Ordinal))
            {
                continue;
            }
            if (text.Contains("PRIVATE KEY-----", StringComparison.Ordinal))
            {
                entries.Add((file, file));
                continue;
            }
            var stem = Path.Combine(dir, Path.GetFileNameWithoutExtension(name));
            var key = new[] { stem + ".key", stem + "-key.pem", stem + ".key.pem" }.FirstOrDefault(File.Exists);
            entries.Add((file, key ?? stem + ".key"));
        }
        return entries;
    }
}
